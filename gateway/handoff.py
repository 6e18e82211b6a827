"""The pipeline's side of several replicas: answer here, or hand the message over.

Before a lane's worker answers a message it asks ``here``: the replica that owns the
conversation's lease answers; any other leaves the message in the durable inbox and wakes
the owner. A woken owner queues the message in the same lane (``on_wake``), after what it
already has. ``sweep`` (every few seconds, on every replica) takes the leases of lanes
whose unanswered messages nobody owns any more, a dead replica's for instance, and queues
those messages, oldest first; in lanes it owns already, it queues what was handed over
without reaching it (a lost wake-up), so a wake-up is only ever a shortcut. ``taken``
remembers what this replica queued, so a message is never queued twice here however it
arrives (its own adapter, a wake-up, a sweep).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from adapters.base import Adapter, InboundMessage
from adapters.common.memory import Recent
from gateway.cluster import Cluster
from gateway.intake import lane_key
from gateway.ledger import Ledger, decode, inbox_id
from runtime.agent_runtime import AgentRuntime
from runtime.storage.base import InboxRecord

log = logging.getLogger(__name__)

LOCAL_PLATFORMS = frozenset({"webchat"})
"""Platforms whose replies can only leave through the replica the user is connected to."""
SWEEP_GRACE = 3.0
"""Seconds a message may wait for its own replica to claim it before a sweep takes it."""

Enqueue = Callable[[str, InboundMessage | None, str], None]
"""(lane key, the message or None to read it from the inbox, inbox id)"""


def lease_key(lane: str) -> str:
    return f"lane:{lane}"


class Handoff:
    def __init__(
        self,
        cluster: Cluster,
        ledger: Ledger,
        runtime: AgentRuntime,
        adapters: Mapping[str, Adapter],
        enqueue: Enqueue,
    ) -> None:
        self.cluster = cluster
        self._ledger = ledger
        self._runtime = runtime
        self._adapters = adapters
        self._enqueue = enqueue
        self.taken = Recent(50_000)

    def accepted_here(self, message_id: str) -> None:
        """This replica's adapter accepted it: a sweep here must not queue it again.
        With one process there is no sweep while running, so nothing is remembered."""
        if self.cluster.shared:
            self.taken.add(message_id)

    def applies_to(self, message: InboundMessage) -> bool:
        return self.cluster.shared and message.platform not in LOCAL_PLATFORMS

    async def here(self, lane: str, message: InboundMessage) -> bool:
        """Whether this replica answers the message; if not, its owner is woken."""
        if not self.applies_to(message):
            return True
        claim = await self.cluster.claim(lease_key(lane))
        if claim == "elsewhere":
            log.debug("handing %s to the replica that owns %s", message.message_id, lane)
            # No longer ours: if that owner dies before answering, our sweep takes it.
            self.taken.discard(inbox_id(message))
            await self.cluster.wake(lease_key(lane), inbox_id(message))
            return False
        if claim == "new":
            # Another replica may have moved this conversation on since we last held it.
            self._runtime.router.reload_sender(message.scope)
        return True

    def on_wake(self, key: str, message_id: str) -> None:
        if self.taken.add(message_id):
            self._enqueue(key.removeprefix("lane:"), None, message_id)

    async def sweep(self, window: float, *, grace: float = SWEEP_GRACE) -> list[InboxRecord]:
        """Queue the unanswered messages of lanes this replica can take: every lane with
        one process (after a crash), lanes nobody owns with replicas (a dead replica's).
        Returns those accepted more than ``window`` seconds ago instead, too old to
        answer (the caller tells their senders). ``grace`` leaves a just-accepted
        message to the replica that is claiming it now."""
        cutoff = time.time() - grace
        by_lane: dict[str, list[tuple[InboxRecord, InboundMessage]]] = {}
        too_old: list[InboxRecord] = []
        for record in await self._ledger.unanswered():
            if record.accepted_at > cutoff or record.id in self.taken:
                continue
            adapter = self._adapters.get(record.platform)
            if adapter is None and not self.cluster.shared:
                too_old.append(record)  # its platform is gone from this gateway
                continue
            if adapter is None or adapter.state != "connected":
                continue  # answered by a replica whose adapter is up
            message = decode(record)
            if self.cluster.shared and message.platform in LOCAL_PLATFORMS:
                continue
            by_lane.setdefault(lane_key(message), []).append((record, message))
        oldest = time.time() - window
        for lane, items in by_lane.items():
            if not await self._take_over(lane, items[0][1].scope, len(items)):
                continue
            for record, message in items:
                if record.accepted_at < oldest:
                    too_old.append(record)
                elif self.taken.add(record.id):
                    self._enqueue(lane, message, record.id)
        return too_old

    async def _take_over(self, lane: str, scope: str, waiting: int) -> bool:
        if not self.cluster.shared:
            return True
        key = lease_key(lane)
        if self.cluster.holds(key):
            return True  # ours: what reached us without a wake-up (a lost NOTIFY)
        if await self.cluster.claim(key) == "elsewhere":
            return False  # a live replica's
        log.info("took over %s with %d unanswered message(s)", lane, waiting)
        self._runtime.router.reload_sender(scope)
        return True
