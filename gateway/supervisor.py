"""Keeps each adapter running: reconnects with backoff, stops for good on refused
credentials. One adapter failing never takes the others down."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from adapters.base import Adapter, InboundSink
from adapters.errors import CredentialsRejected
from runtime.backoff import Backoff, log_retry

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Supervised:
    adapter: Adapter
    failed: str | None = None  # why it was given up on, naming the fix
    attempts: int = 0

    @property
    def state(self) -> str:
        return "failed" if self.failed else self.adapter.state


async def supervise(
    entry: Supervised,
    sink: InboundSink,
    *,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    healthy_after: float = 30.0,
) -> None:
    name = entry.adapter.name
    backoff = Backoff(base=base_delay, cap=max_delay)
    while True:
        started = time.monotonic()
        try:
            await entry.adapter.run(sink)
            log.info("%s adapter stopped", name)
            return
        except CredentialsRejected as exc:
            entry.failed = str(exc)
            log.error("%s adapter failed for good, not retrying: %s", name, exc)
            return
        except Exception as exc:
            if time.monotonic() - started >= healthy_after:
                entry.attempts = 0  # it had been up a while: start the backoff over
            entry.attempts += 1
            delay = backoff.delay(entry.attempts)
            reason = f"{type(exc).__name__}: {exc}"
            log_retry(log, f"{name} adapter", reason, attempt=entry.attempts, delay=delay)
            await asyncio.sleep(delay)
