"""Replicas in one process: two pipelines on one store, each with its own lease name.

The store's clock is the test's, so a dead replica's leases lapse when the test says.
A replica that is "dead" here simply stops: it renews nothing and hears no wake-ups.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cluster import LEASE_TTL, Cluster
from gateway.ledger import inbox_id
from gateway.upkeep import RECOVERY_WINDOW
from runtime.history import UserEntry
from runtime.providers.base import ModelRequest
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.scripted_provider import Gate, Text
from tests.pipeline_helpers import dm, rig
from tests.runtime_helpers import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def storage(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(tmp_path / "gw.db", clock=clock)
    await store.open()
    yield store
    await store.close()


async def states(storage: SqliteStorage, *ids: str) -> list[str]:
    return [r.state for r in await storage.get_inbound(list(ids))]


def first_seen(requests: list[ModelRequest]) -> list[str]:
    """The user texts the model was sent, each at the first request that carried it."""
    seen: list[str] = []
    for request in requests:
        users = [m.text for m in request.messages if isinstance(m, UserEntry)]
        assert users[: len(seen)] == seen, "a request lost or reordered earlier messages"
        seen = users
    return seen


async def test_the_owner_is_woken_and_steers_what_another_replica_accepted(
    storage: SqliteStorage,
) -> None:
    owner, other = Cluster(storage, name="owner"), Cluster(storage, name="other")
    async with rig(storage=storage, cluster=owner) as a, rig(storage=storage, cluster=other) as b:
        await owner.listen(a.pipeline.handoff.on_wake)
        gate = Gate()
        a.provider.script(gate, Text("first"))
        a.provider.script(Text("second"))
        await a.adapter.deliver(dm("one"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        steered = dm("two")
        await b.adapter.deliver(steered)
        # The owner took it into its running turn: acknowledged there, never run on b.
        await a.adapter.wait_for(lambda: (steered.message_id, "\N{EYES}") in a.adapter.reactions)
        gate.release()
        await a.adapter.wait_for(lambda: "second" in a.adapter.chat("dm42"))
        assert b.provider.requests == []
        assert b.adapter.chat("dm42") == []


async def test_a_lost_wake_up_is_made_good_by_the_owners_sweep(storage: SqliteStorage) -> None:
    owner, other = Cluster(storage, name="owner"), Cluster(storage, name="other")
    async with rig(storage=storage, cluster=owner) as a, rig(storage=storage, cluster=other) as b:
        gate = Gate()  # the owner never listens: the wake-up goes nowhere
        a.provider.script(gate, Text("first"))
        a.provider.script(Text("second"))
        await a.adapter.deliver(dm("one"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        steered = dm("two")
        await b.adapter.deliver(steered)
        await wait_for(lambda: not b.pipeline.lanes)
        assert (steered.message_id, "\N{EYES}") not in a.adapter.reactions
        await a.pipeline.handoff.sweep(RECOVERY_WINDOW, grace=0)
        await a.adapter.wait_for(lambda: (steered.message_id, "\N{EYES}") in a.adapter.reactions)
        gate.release()
        await a.adapter.wait_for(lambda: "second" in a.adapter.chat("dm42"))
        # Nothing is queued twice: a second sweep finds it taken.
        await a.pipeline.handoff.sweep(RECOVERY_WINDOW, grace=0)
        await wait_for(lambda: not a.runtime.active_runs() and not a.pipeline.lanes)
        assert len(a.provider.requests) == 2
        assert b.provider.requests == []


async def test_a_message_handed_to_a_dead_owner_is_taken_over_once_its_lease_lapses(
    storage: SqliteStorage, clock: Clock
) -> None:
    dead, alive = Cluster(storage, name="dead"), Cluster(storage, name="alive")
    async with (
        rig(storage=storage, cluster=dead) as a,
        rig(storage=storage, cluster=alive) as b,
    ):
        gate = Gate()  # never released: the owner "dies" mid-reply
        a.provider.script(gate, Text("never shown"))
        first = dm("one")
        await a.adapter.deliver(first)
        await asyncio.wait_for(gate.reached.wait(), 5)
        second = dm("two")
        await b.adapter.deliver(second)  # accepted on b, handed to the (dead) owner
        await wait_for(lambda: not b.pipeline.lanes)
        assert b.provider.requests == []

        # The lease is live: not b's to take, even with no grace for new messages.
        assert await b.pipeline.handoff.sweep(RECOVERY_WINDOW, grace=0) == []
        assert not b.pipeline.lanes
        assert b.provider.requests == []

        clock.now += LEASE_TTL + 1  # the owner's lease lapsed (the store's clock)
        await b.pipeline.handoff.sweep(RECOVERY_WINDOW, grace=0)
        await b.adapter.wait_for(lambda: len(b.adapter.chat("dm42")) >= 1)
        await wait_for(lambda: not b.runtime.active_runs() and not b.pipeline.lanes)
        # Each message reached the model on b once, in order (the second either steered
        # into the first's call or started the next one).
        assert first_seen(b.provider.requests) == ["one", "two"]
        assert await states(storage, inbox_id(first), inbox_id(second)) == ["answered"] * 2
        # A second sweep finds nothing: nothing is answered twice.
        await b.pipeline.handoff.sweep(RECOVERY_WINDOW, grace=0)
        assert not b.pipeline.lanes
