"""The one backoff every retry site uses: model providers, Telegram polling, the adapter
supervisor, the outbound budget and the SQLite store waiting out another process's lock.

``Backoff.delay(attempt)`` grows exponentially from ``base`` up to ``cap``, with jitter
in the upper part of each step so it keeps growing while spreading clients out; a
server's own ``Retry-After`` (``at_least``) is honoured. ``log_retry`` writes the retry
line every site shares: what failed, why, the delay and the attempt count.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    base: float = 0.5  # the first delay (before jitter)
    cap: float = 30.0  # no delay is longer, except a server's own Retry-After
    jitter: float = 0.5  # the fraction of each delay that is random (0 = none)

    def delay(self, attempt: int, *, at_least: float = 0.0) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** (max(attempt, 1) - 1))
        return max(ceiling * random.uniform(1.0 - self.jitter, 1.0), at_least)


def log_retry(
    logger: logging.Logger,
    what: str,
    reason: str,
    *,
    attempt: int,
    delay: float,
    attempts: int | None = None,
) -> None:
    """``<what> failed (<reason>); retrying in <delay>s (attempt N[ of M])``."""
    count = f"{attempt} of {attempts}" if attempts is not None else str(attempt)
    logger.warning("%s failed (%s); retrying in %.2fs (attempt %s)", what, reason, delay, count)
