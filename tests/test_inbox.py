"""The durable inbox: recorded at acceptance, answered with the run's commit, recovered."""

from __future__ import annotations

import asyncio
import time

from gateway.ledger import decode, encode, inbox_id
from runtime.storage.base import InboxRecord
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.scripted_provider import Gate, Text
from tests.pipeline_helpers import dm, rig
from tests.runtime_helpers import wait_for


async def states(storage: SqliteStorage) -> dict[str, str]:
    return {r.id: r.state for r in await storage.unanswered_inbound()}


async def test_a_message_is_recorded_when_accepted_and_answered_with_its_run(
    storage: SqliteStorage,
) -> None:
    async with rig(storage=storage) as r:
        gate = Gate()
        r.provider.script(gate, Text("answer"))
        message = dm("question")
        await r.adapter.deliver(message)
        # handle() returned: the message is safe before anything was answered
        assert await states(storage) == {inbox_id(message): "accepted"}
        await asyncio.wait_for(gate.reached.wait(), 5)
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["answer"])
        await wait_for(lambda: not r.runtime.active_runs())
        assert await states(storage) == {}


async def test_a_redelivered_message_is_dropped_once_answered(storage: SqliteStorage) -> None:
    async with rig(storage=storage) as r:
        message = dm("hello", message_id="same")
        await r.adapter.deliver(message)
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["ok"])
        await r.adapter.deliver(message)
        await r.adapter.deliver(dm("/status"))
        await r.adapter.wait_for(lambda: "Running" in r.adapter.chat("dm42")[-1])
        assert len(r.provider.requests) == 1
        assert r.pipeline.metrics.duplicates.value("mem") == 1


async def test_steered_and_command_messages_are_settled_too(storage: SqliteStorage) -> None:
    async with rig(storage=storage) as r:
        gate = Gate()
        r.provider.script(gate, Text("first"))
        r.provider.script(Text("second"))
        await r.adapter.deliver(dm("q1"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        await r.adapter.deliver(dm("q2"))  # steered into the running turn
        await r.adapter.deliver(dm("/help"))
        gate.release()
        await r.adapter.wait_for(lambda: "second" in r.adapter.chat("dm42"))
        await wait_for(lambda: not r.runtime.active_runs())
        await wait_for(lambda: not r.pipeline.lanes)
        assert await states(storage) == {}


async def test_recovery_answers_what_a_crash_left_unanswered_exactly_once(
    storage: SqliteStorage,
) -> None:
    lost = dm("did you get this?")
    # a previous process accepted it, then died before its run committed
    record = InboxRecord(
        id=inbox_id(lost),
        platform="mem",
        payload=encode(lost),
        state="accepted",
        accepted_at=time.time(),
    )
    [recorded] = await storage.accept_inbound([record])
    assert recorded
    async with rig(storage=storage) as r:
        await r.pipeline.upkeep.recover()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["ok"])
        await wait_for(lambda: not r.runtime.active_runs())
        assert await states(storage) == {}
        await r.pipeline.upkeep.recover()  # nothing left: nothing answered twice
        await r.adapter.deliver(lost)  # the platform redelivers it: a duplicate now
        await r.adapter.deliver(dm("/status"))
        await r.adapter.wait_for(lambda: "Running" in r.adapter.chat("dm42")[-1])
        assert len(r.provider.requests) == 1
        assert r.adapter.chat("dm42")[0] == "ok"


def test_the_payload_round_trips_what_recovery_needs() -> None:
    message = dm("hi", attachment_notes=("a.pdf (application/pdf)",), match={"chat": "dm42"})
    record = InboxRecord(
        id=inbox_id(message),
        platform="mem",
        payload=encode(message),
        state="accepted",
        accepted_at=0.0,
    )
    back = decode(record)
    assert back == message
