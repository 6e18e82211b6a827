"""Steering: a FIFO into the running turn; nothing dropped, never a second run."""

from __future__ import annotations

import asyncio

import pytest

from runtime.events import Done, ToolResult, UserSteered
from runtime.history import AssistantEntry, UserEntry
from runtime.tools import Tool
from tests.fakes.scripted_provider import Call, Gate, ScriptedProvider, Text
from tests.runtime_helpers import RunRecorder, collect, make_runtime, msg, within


async def test_follow_ups_during_a_model_call_are_all_delivered_in_order() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("checking"), Call("get_time"), gate)
    provider.script(Text("done"))
    runtime = make_runtime(provider)
    first = await runtime.submit("bot", "thread", msg("start", "ann"))
    await within(gate.reached.wait())
    steered = [
        await runtime.submit("bot", "thread", msg(f"follow {i}", who, message_id=f"m{i}"))
        for i, who in enumerate(["bob", "cat", "ann"])
    ]
    assert [s.outcome for s in steered] == ["steered"] * 3
    assert [s.position for s in steered] == [1, 2, 3]
    assert all(s.run is first.run for s in steered)
    gate.release()
    events = await within(collect(first.run))
    steer_events = [e for e in events if isinstance(e, UserSteered)]
    assert [e.entry.text for e in steer_events] == ["follow 0", "follow 1", "follow 2"]
    assert [e.message_id for e in steer_events] == ["m0", "m1", "m2"]
    assert [e.entry.speaker.name for e in steer_events if e.entry.speaker] == ["Bob", "Cat", "Ann"]
    # all three reached the second model call, after the tool result, as their own entries
    second = provider.requests[1].messages
    users = [e for e in second if isinstance(e, UserEntry)]
    assert [u.text for u in users] == ["start", "follow 0", "follow 1", "follow 2"]
    assert all(u.steered for u in users[1:])
    assert isinstance(events[-1], Done)
    assert events[-1].text == "done"
    assert len(provider.requests) == 2  # no second run


async def test_a_running_tool_is_not_killed_by_steering() -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def slow(_: dict[str, object]) -> str:
        running.set()
        await release.wait()
        return "slow result"

    provider = ScriptedProvider()
    provider.script(Call("slow"))
    provider.script(Text("after tool"))
    runtime = make_runtime(provider, tools=[Tool(name="slow", description="x", handler=slow)])
    sub = await runtime.submit("bot", "s", msg("go"))
    await within(running.wait())
    steer = await runtime.submit("bot", "s", msg("hurry up"))
    assert steer.outcome == "steered"
    release.set()
    events = await within(collect(sub.run))
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [(r.content, r.is_error) for r in results] == [("slow result", False)]
    assert provider.requests[1].messages[-1] == UserEntry(
        text="hurry up", speaker=msg("x").speaker, steered=True
    )


async def test_follow_up_during_the_final_answer_starts_the_next_run_at_once() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("final "), gate, Text("answer"))
    provider.script(Text("second answer"))
    runtime = make_runtime(provider)
    recorder = RunRecorder(runtime)
    first = await runtime.submit("bot", "s", msg("q1"))
    await within(gate.reached.wait())
    follow = await runtime.submit("bot", "s", msg("q2", message_id="m2"))
    assert follow.outcome == "steered"
    gate.release()
    assert (await within(first.run.wait())).text == "final answer"
    second = await within(recorder.nth(2))
    events = await within(collect(second))
    assert [e.entry.text for e in events if isinstance(e, UserSteered)] == ["q2"]
    assert isinstance(events[-1], Done)
    assert events[-1].text == "second answer"
    history = first.conversation.history
    assert [type(e) for e in history] == [UserEntry, AssistantEntry, UserEntry, AssistantEntry]


@pytest.mark.parametrize("yields", range(12))
async def test_follow_up_landing_as_the_run_finishes_is_never_lost(yields: int) -> None:
    """Send the follow-up after 0..11 loop turns: wherever the run's end is by then
    (streaming, saving, emitting Done, idle), the message is answered exactly once."""
    provider = ScriptedProvider(default=[Text("reply")])
    runtime = make_runtime(provider)
    recorder = RunRecorder(runtime)
    await runtime.submit("bot", "s", msg("first"))
    for _ in range(yields):
        await asyncio.sleep(0)
    await runtime.submit("bot", "s", msg("second"))
    await within(recorder.nth(1))
    for run in list(recorder.runs):
        await within(run.wait())
    # whatever run took it, wait until every run (incl. one started from the queue) ended
    await within(_all_done(recorder))
    conv = recorder.runs[0].conversation
    users = [e.text for e in conv.history if isinstance(e, UserEntry)]
    assert users == ["first", "second"]
    replies = [e for e in conv.history if isinstance(e, AssistantEntry)]
    assert len(replies) in (1, 2)  # steered into run 1 before its call, or its own run
    assert conv.run is None
    assert not conv.steering


async def _all_done(recorder: RunRecorder) -> None:
    while True:
        runs = list(recorder.runs)
        for run in runs:
            await run.wait()
        await asyncio.sleep(0)
        if len(recorder.runs) == len(runs) and all(r.finished for r in recorder.runs):
            return


async def test_queue_is_fifo_across_a_burst_of_many_messages() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(gate, Text("one"))
    runtime = make_runtime(provider)
    recorder = RunRecorder(runtime)
    await runtime.submit("bot", "s", msg("m0"))
    await within(gate.reached.wait())
    for i in range(1, 51):
        await runtime.submit("bot", "s", msg(f"m{i}"))
    gate.release()
    await within(_all_done(recorder))
    conv = recorder.runs[0].conversation
    assert [e.text for e in conv.history if isinstance(e, UserEntry)] == [
        f"m{i}" for i in range(51)
    ]
    assert len(recorder.runs) == 2  # the burst became exactly one follow-up run
