"""Runs: started without waiting, one per conversation, exactly one Done, cancel/error."""

from __future__ import annotations

import asyncio

import pytest

from runtime.errors import ProviderStreamError, ProviderUnavailableError
from runtime.events import (
    Done,
    TextDelta,
    TextEnd,
    TextStart,
    ThinkingDelta,
    ThinkingEnd,
    ThinkingStart,
)
from runtime.history import AssistantEntry, ToolResultEntry, UserEntry
from runtime.loop import CANCELLED_TOOL_RESULT
from runtime.tools import Tool
from tests.fakes.scripted_provider import Call, Fail, Gate, ScriptedProvider, Text, Think
from tests.runtime_helpers import collect, make_runtime, msg, within


async def test_text_run_brackets_segments_and_ends_with_one_done() -> None:
    provider = ScriptedProvider()
    provider.script(Think("hmm"), Text("Hel"), Text("lo"))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "test:user:1", msg("hi"))
    events = await within(collect(sub.run))
    assert [type(e) for e in events] == [
        ThinkingStart,
        ThinkingDelta,
        ThinkingEnd,
        TextStart,
        TextDelta,
        TextDelta,
        TextEnd,
        Done,
    ]
    assert events[6] == TextEnd(text="Hello")
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "text"
    assert done.text == "Hello"
    history = sub.conversation.history
    assert history[0] == UserEntry(text="hi", speaker=msg("hi").speaker)
    assert history[1] == AssistantEntry(text="Hello", thinking="hmm")
    # the model saw the system prompt and the user message
    assert provider.requests[0].system == "be brief"


async def test_submit_returns_before_the_run_finishes() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("a"), gate, Text("b"))
    runtime = make_runtime(provider)
    sub = await within(runtime.submit("bot", "s", msg("go")))
    assert sub.outcome == "started"
    await within(gate.reached.wait())
    assert not sub.run.finished
    gate.release()
    done = await within(sub.run.wait())
    assert done.text == "ab"
    # a late subscriber still sees the whole run, ending with the one Done
    events = await within(collect(sub.run))
    assert sum(isinstance(e, Done) for e in events) == 1
    with pytest.raises(RuntimeError):
        sub.run.emit(Done(reason="text"))


async def test_a_listener_that_raises_neither_fails_the_run_nor_starves_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("a"), gate, Text("b"))
    runtime = make_runtime(provider)
    sub = await within(runtime.submit("bot", "s", msg("go")))
    await within(gate.reached.wait())
    seen: list[type[object]] = []

    def broken(event: object) -> None:
        raise ValueError("a watcher's bug")

    sub.run.listen(broken)  # raises on the events so far, too
    sub.run.listen(lambda event: seen.append(type(event)))
    gate.release()
    done = await within(sub.run.wait())
    assert done.reason == "text"
    assert done.text == "ab"
    assert seen == [TextStart, TextDelta, TextDelta, TextEnd, Done]
    assert "a run listener failed on Done" in caplog.text


async def test_no_action_appends_nothing() -> None:
    provider = ScriptedProvider()
    provider.script()
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hi"))
    done = await within(sub.run.wait())
    assert done.stop_reason == "no_action"
    assert [type(e) for e in sub.conversation.history] == [UserEntry]


async def test_max_iterations_stops_a_tool_loop() -> None:
    provider = ScriptedProvider(default=[Call("get_time")])
    runtime = make_runtime(provider, max_iterations=3)
    sub = await runtime.submit("bot", "s", msg("loop"))
    done = await within(sub.run.wait())
    assert done.stop_reason == "max_iterations"
    assert len(provider.requests) == 3


async def test_error_before_first_token_ends_with_error() -> None:
    provider = ScriptedProvider()
    provider.script(Fail(ProviderUnavailableError("The model is unavailable.")))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hi"))
    done = await within(sub.run.wait())
    assert done.stop_reason == "error: The model is unavailable."
    assert [type(e) for e in sub.conversation.history] == [UserEntry]


async def test_error_after_first_token_keeps_partial_text_and_next_message_works() -> None:
    provider = ScriptedProvider()
    provider.script(Text("Part"), Text("ial"), Fail(ProviderStreamError("The stream broke.")))
    provider.script(Text("fine"))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hi"))
    events = await within(collect(sub.run))
    assert isinstance(events[-2], TextEnd)  # the open segment is closed before Done
    done = events[-1]
    assert isinstance(done, Done)
    assert done.reason == "error"
    assert done.text == "Partial"
    assert sub.conversation.history[-1] == AssistantEntry(text="Partial", interrupted=True)
    again = await runtime.submit("bot", "s", msg("again"))
    assert again.outcome == "started"
    assert (await within(again.run.wait())).stop_reason == "text"
    # the retry saw the interrupted partial reply in its history
    assert provider.requests[1].messages[1] == AssistantEntry(text="Partial", interrupted=True)


async def test_cancel_keeps_partial_text_marked_interrupted() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("half "), gate, Text("never"))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hi"))
    await within(gate.reached.wait())
    assert runtime.stop(sub.conversation)
    done = await within(sub.run.wait())
    assert done.stop_reason == "cancelled"
    assert sub.conversation.history[-1] == AssistantEntry(text="half ", interrupted=True)
    assert sub.conversation.run is None
    assert not runtime.stop(sub.conversation)  # nothing left to stop


async def test_cancel_during_tools_cancels_them_and_answers_every_call() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(_: dict[str, object]) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    provider = ScriptedProvider()
    provider.script(Call("slow", id="c1"), Call("get_time", id="c2"))
    runtime = make_runtime(provider, tools=[Tool(name="slow", description="x", handler=slow)])
    sub = await runtime.submit("bot", "s", msg("hi"))
    await within(started.wait())
    sub.run.cancel()
    done = await within(sub.run.wait())
    assert done.stop_reason == "cancelled"
    assert cancelled.is_set()
    results = [e for e in sub.conversation.history if isinstance(e, ToolResultEntry)]
    assert [r.call_id for r in results] == ["c1", "c2"]
    assert results[0].content == CANCELLED_TOOL_RESULT
    assert results[0].is_error


async def test_one_run_per_conversation_and_separate_runs_per_sender() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(gate, Text("first"))
    provider.script(Text("other sender"))
    runtime = make_runtime(provider)
    a = await runtime.submit("bot", "s1", msg("one"))
    await within(gate.reached.wait())
    b = await runtime.submit("bot", "s1", msg("two"))
    c = await runtime.submit("bot", "s2", msg("three"))
    assert b.outcome == "steered"
    assert b.run is a.run
    assert c.outcome == "started"
    assert c.run is not a.run
    assert len(runtime.active_runs()) == 2
    await within(c.run.wait())
    gate.release()
    await within(a.run.wait())


async def test_cancel_before_the_run_starts_still_ends_with_done() -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hi"))
    sub.run.cancel()  # before the task has had a chance to run
    done = await within(sub.run.wait())
    assert done.stop_reason == "cancelled"
    assert provider.requests == []
