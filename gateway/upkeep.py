"""What the gateway does over time rather than per message.

``recover`` answers, once at start, what a crash left unanswered in the inbox (a single
process; with replicas the sweep does it, since another replica may be answering those
messages right now). ``run`` keeps memory and the ledger bounded on a timer: idle
conversations and per-chat budgets are forgotten, settled inbox records pruned.
``replicate`` (replicas only) takes handed-over messages, keeps this replica's leases
and sweeps for a dead replica's work. Messages too old to answer get a short note.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from adapters.base import Adapter, ChatTarget
from gateway.budget import OutboundBudget
from gateway.handoff import Handoff
from gateway.intake import Origin, Queued, lane_key
from gateway.lanes import Lanes
from gateway.ledger import Ledger, decode
from runtime.agent_runtime import AgentRuntime

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 300.0
LEDGER_TTL = 7 * 24 * 3600.0
"""Seconds a settled inbox record is kept (deduplication of late redeliveries)."""
RESTARTED_NOTE = "I was restarted and lost your message; please send it again."
RECOVERY_WINDOW = 15 * 60.0
"""Seconds after which an unanswered message is no longer answered after a restart."""

Reply = Callable[[ChatTarget, str], Awaitable[None]]


class Upkeep:
    def __init__(
        self,
        *,
        runtime: AgentRuntime,
        ledger: Ledger,
        handoff: Handoff,
        lanes: Lanes[Queued],
        adapters: Mapping[str, Adapter],
        budgets: Mapping[str, OutboundBudget],
        reply: Reply,
    ) -> None:
        self._runtime = runtime
        self._ledger = ledger
        self._handoff = handoff
        self._lanes = lanes
        self._adapters = adapters
        self._budgets = budgets
        self._reply = reply

    async def run(self, *, every: float = MAINTENANCE_INTERVAL) -> None:
        if not self._handoff.cluster.shared:
            try:
                await self.recover()
            except Exception:
                log.exception("answering the inbox left by the last run failed")
        while True:
            await asyncio.sleep(every)
            try:
                self.housekeeping()
                await self._ledger.prune(LEDGER_TTL)
            except Exception:
                log.exception("housekeeping failed")

    async def recover(self, *, window: float = RECOVERY_WINDOW, wait: float = 60.0) -> None:
        """Answer what a crash left unanswered: recent messages go through their lanes
        again; older ones get a short note asking to send them again."""
        records = await self._ledger.unanswered()
        if not records:
            return
        log.info("inbox: %d unanswered message(s) from before the restart", len(records))
        for platform in {r.platform for r in records} & set(self._adapters):
            await self._until_connected(platform, wait)
        await self._sweep(window, grace=0.0)

    async def _until_connected(self, platform: str, wait: float) -> None:
        adapter = self._adapters[platform]
        deadline = time.monotonic() + wait
        while adapter.state != "connected" and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # an adapter's state has no event to wait on

    async def replicate(self) -> None:
        cluster = self._handoff.cluster
        try:
            await cluster.listen(self._handoff.on_wake)
        except Exception as exc:  # the sweep still finds what is handed over, later
            log.warning("no wake-ups from other replicas (%s); relying on the sweep", exc)
        await cluster.maintain(self._lease_in_use, lambda: self._sweep(RECOVERY_WINDOW))

    def _lease_in_use(self, key: str) -> bool:
        if not key.startswith("lane:"):
            return True  # an adapter's election: kept while it runs here
        lane = key.removeprefix("lane:")
        if self._lanes.active(lane):
            return True
        return any(
            isinstance(run.origin, Origin) and lane_key(run.origin.message) == lane
            for run in self._runtime.active_runs()
        )

    async def _sweep(self, window: float, *, grace: float | None = None) -> None:
        if grace is None:
            too_old = await self._handoff.sweep(window)
        else:
            too_old = await self._handoff.sweep(window, grace=grace)
        for record in too_old:
            if record.platform in self._adapters:
                await self._reply(decode(record).target, RESTARTED_NOTE)
        await self._ledger.expire(too_old)

    def housekeeping(self) -> None:
        evicted = self._runtime.evict_idle()
        for budget in self._budgets.values():
            budget.forget_idle()
        if evicted:
            log.debug("evicted %d idle conversations", evicted)
