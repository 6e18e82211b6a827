"""Keeps each adapter running: reconnects with backoff, stops for good on refused
credentials. One adapter failing never takes the others down."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from adapters.base import Adapter, InboundSink
from adapters.errors import CredentialsRejected
from gateway.cluster import RENEW_EVERY, Cluster
from runtime.backoff import Backoff, log_retry

log = logging.getLogger(__name__)


@dataclass(kw_only=True, slots=True)
class Supervised:
    adapter: Adapter
    failed: str | None = None  # why it was given up on, naming the fix
    attempts: int = 0
    standby: bool = False  # another replica runs it (an elected adapter)

    @property
    def state(self) -> str:
        if self.failed:
            return "failed"
        return "standby" if self.standby else self.adapter.state


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


async def supervise_elected(entry: Supervised, sink: InboundSink, cluster: Cluster) -> None:
    """Run an adapter that must run once (Telegram polling, the Discord gateway) only
    while this replica holds its election lease; stand by, and take over, otherwise."""
    name = entry.adapter.name
    key = f"adapter:{name}"
    while True:
        entry.standby = True
        while await cluster.claim(key) == "elsewhere":  # noqa: ASYNC110 (no event for a lease)
            await asyncio.sleep(RENEW_EVERY)
        entry.standby = False
        log.info("%s adapter runs on replica %s (elected)", name, cluster.name)
        task = asyncio.create_task(supervise(entry, sink), name=f"elected-{name}")
        try:
            while cluster.holds(key) and not task.done():  # noqa: ASYNC110 (lease state has no event)
                await asyncio.sleep(RENEW_EVERY)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if entry.failed is not None:
            return
        log.warning("%s adapter lost its election on replica %s; standing by", name, cluster.name)
