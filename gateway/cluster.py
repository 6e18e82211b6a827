"""Several gateway replicas on one shared store: who answers which conversation.

Each conversation (a lane key: sender scope and thread) is owned by one replica at a time
through a lease row in the store, renewed while the replica is alive and the lane is in
use. A replica that accepts a message for a lane another replica owns leaves it in the
durable inbox and wakes the owner with a notification on the owner's channel; the owner
reads it back and queues it in the same lane, so steering, FIFO order and one run per
conversation hold across replicas. A dead owner stops renewing; once its leases lapse, a
sweep on every replica finds the unanswered messages of lanes nobody owns, takes their
leases and answers them. Adapters that must run once (Telegram polling, the Discord
gateway connection) run on the replica holding that adapter's lease; the others stand by.

With one process (SQLite) none of this runs: a cluster without storage owns everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from runtime.storage.base import Storage, Unlisten

log = logging.getLogger(__name__)

LEASE_TTL = 10.0
"""Seconds a lease lasts without renewal: how long a dead replica's work waits."""
RENEW_EVERY = 2.5
"""Seconds between lease renewals, and between sweeps for unanswered messages."""
IDLE_RELEASE = 600.0
"""Seconds after its last use a conversation's lease is given back."""
WAKE_CHANNEL = "agent_gateway_inbox"


def replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


Claim = Literal["new", "held", "elsewhere"]


class Cluster:
    """Leases and wake-ups for one replica; ``storage`` None means a single process."""

    def __init__(self, storage: Storage | None, *, name: str | None = None) -> None:
        self.storage = storage
        self.name = name or replica_name()
        self._held: dict[str, float] = {}  # lease key -> last use (monotonic)
        self._unlisten: Unlisten | None = None

    @property
    def shared(self) -> bool:
        """True when other replicas may share the store."""
        return self.storage is not None

    def holds(self, key: str) -> bool:
        return not self.shared or key in self._held

    async def claim(self, key: str) -> Claim:
        """Own ``key``: "new" when just taken (state cached elsewhere may be stale),
        "held" when it was ours already, "elsewhere" while a live replica owns it."""
        if self.storage is None:
            return "held"
        fresh = key not in self._held
        if not await self.storage.try_acquire_lease(key, self.name, LEASE_TTL):
            self._held.pop(key, None)
            return "elsewhere"
        self._held[key] = time.monotonic()
        if fresh:
            log.debug("replica %s now owns %s", self.name, key)
        return "new" if fresh else "held"

    async def wake(self, key: str, inbox_id: str) -> None:
        """Tell whichever replica owns ``key`` that ``inbox_id`` is waiting for it."""
        assert self.storage is not None
        await self.storage.notify(WAKE_CHANNEL, f"{inbox_id}\t{key}")

    async def listen(self, on_message: Callable[[str, str], None]) -> None:
        """Call ``on_message(key, inbox_id)`` for each message handed to a lane we own."""
        if self.storage is None:
            return

        def received(payload: str) -> None:
            inbox_id, _, key = payload.partition("\t")
            if key in self._held:
                on_message(key, inbox_id)

        self._unlisten = await self.storage.listen(WAKE_CHANNEL, received)

    async def maintain(
        self,
        busy: Callable[[str], bool],
        sweep: Callable[[], Awaitable[None]],
    ) -> None:
        """Every ``RENEW_EVERY`` seconds: renew what is in use, give back what went idle,
        and sweep for orphans. A failed round (the database away for a moment) is
        logged and the next one tries again: leases are lost only if it stays away."""
        if self.storage is None:
            return
        failures = 0
        while True:
            try:
                await self._renew(busy)
                await sweep()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning(
                    "replica %s could not keep its leases (%s: %s); retrying in %.1fs (attempt %d)",
                    self.name,
                    type(exc).__name__,
                    exc,
                    RENEW_EVERY,
                    failures,
                )
            await asyncio.sleep(RENEW_EVERY)

    async def _renew(self, busy: Callable[[str], bool]) -> None:
        assert self.storage is not None
        now = time.monotonic()
        for key, used in list(self._held.items()):
            if busy(key):
                self._held[key] = now
            elif now - used > IDLE_RELEASE:
                del self._held[key]
                await self.storage.release_lease(key, self.name)
        kept = set(await self.storage.renew_leases(self.name, LEASE_TTL))
        for key in [k for k in self._held if k not in kept]:
            log.warning("replica %s lost its lease on %s", self.name, key)
            del self._held[key]

    async def close(self) -> None:
        if self._unlisten is not None:
            await self._unlisten()
            self._unlisten = None
        if self.storage is not None:
            for key in list(self._held):
                await self.storage.release_lease(key, self.name)
            self._held.clear()
