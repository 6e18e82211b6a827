"""The shared backoff: grows, jitters downwards only, is capped, honours Retry-After,
and every retry line carries the attempt count."""

from __future__ import annotations

import logging

import pytest

from runtime.backoff import Backoff, log_retry


def test_delays_double_with_jitter_and_stop_at_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=5.0, jitter=0.5)
    for _ in range(50):
        delays = [backoff.delay(n) for n in (1, 2, 3, 4, 9)]
        assert 0.5 <= delays[0] <= 1.0
        assert 1.0 <= delays[1] <= 2.0
        assert 2.0 <= delays[2] <= 4.0
        assert 2.5 <= delays[3] <= 5.0
        assert 2.5 <= delays[4] <= 5.0


def test_without_jitter_the_delays_are_exact() -> None:
    backoff = Backoff(base=0.25, cap=1.0, jitter=0.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.0]


def test_a_server_retry_after_is_honoured_even_past_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    assert backoff.delay(1, at_least=7.5) == 7.5


def test_jitter_spreads_clients_out() -> None:
    backoff = Backoff(base=1.0, cap=10.0)
    assert len({backoff.delay(3) for _ in range(20)}) > 1


def test_the_retry_line_names_the_attempt(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("tests.backoff")
    with caplog.at_level(logging.WARNING, logger="tests.backoff"):
        log_retry(log, "telegram getUpdates", "NetworkError: reset", attempt=2, delay=1.5)
        log_retry(log, "Provider 'x' stream", "HTTP 503", attempt=1, delay=0.25, attempts=4)
    assert [r.getMessage() for r in caplog.records] == [
        "telegram getUpdates failed (NetworkError: reset); retrying in 1.50s (attempt 2)",
        "Provider 'x' stream failed (HTTP 503); retrying in 0.25s (attempt 1 of 4)",
    ]
