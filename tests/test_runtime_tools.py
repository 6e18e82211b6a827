"""The agent loop's tool handling: concurrency, ordering, errors fed back as text."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from runtime.events import Done, ToolCallsBegin, ToolCallsComplete, ToolCallsStart, ToolResult
from runtime.history import AssistantEntry, ToolResultEntry
from runtime.tools import GET_TIME, Tool, ToolRegistry
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.runtime_helpers import collect, make_runtime, msg, within


async def test_tool_calls_run_concurrently_events_by_completion_history_by_call() -> None:
    first_may_finish = asyncio.Event()
    both_running = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def tool_a(_: dict[str, object]) -> str:
        both_running["a"].set()
        await first_may_finish.wait()
        return "A"

    async def tool_b(_: dict[str, object]) -> str:
        both_running["b"].set()
        await both_running["a"].wait()  # proves a and b overlap in time
        first_may_finish.set()
        return "B"

    provider = ScriptedProvider()
    provider.script(Call("tool_a", id="ca"), Call("tool_b", id="cb"))
    provider.script(Text("both done"))
    runtime = make_runtime(
        provider,
        tools=[
            Tool(name="tool_a", description="a", handler=tool_a),
            Tool(name="tool_b", description="b", handler=tool_b),
        ],
    )
    sub = await runtime.submit("bot", "s", msg("go"))
    events = await within(collect(sub.run))
    kinds = [type(e) for e in events]
    assert kinds.index(ToolCallsBegin) < kinds.index(ToolCallsStart) < kinds.index(ToolResult)
    results = [e for e in events if isinstance(e, ToolResult)]
    # B completes first (it releases A), so events come B then A ...
    assert [r.call.id for r in results] == ["cb", "ca"]
    assert [e for e in events if isinstance(e, ToolCallsComplete)] == [ToolCallsComplete(count=2)]
    # ... while history keeps call order, right after the assistant entry that asked
    history = sub.conversation.history
    assert isinstance(history[1], AssistantEntry)
    assert [c.id for c in history[1].tool_calls] == ["ca", "cb"]
    assert [e.call_id for e in history[2:4] if isinstance(e, ToolResultEntry)] == ["ca", "cb"]
    assert isinstance(events[-1], Done)
    assert events[-1].text == "both done"


async def test_tool_errors_are_fed_back_to_the_model_as_text() -> None:
    async def broken(_: dict[str, object]) -> str:
        raise ValueError("disk on fire")

    provider = ScriptedProvider()
    provider.script(
        Call("broken", id="c1"),
        Call("nope", id="c2"),
        Call("get_time", "{not json", id="c3"),
        Call("get_time", "[1]", id="c4"),
    )
    provider.script(Text("sorry"))
    runtime = make_runtime(provider, tools=[Tool(name="broken", description="x", handler=broken)])
    sub = await runtime.submit("bot", "s", msg("go"))
    done = await within(sub.run.wait())
    assert done.stop_reason == "text"
    fed_back = [e for e in provider.requests[1].messages if isinstance(e, ToolResultEntry)]
    assert [(r.call_id, r.is_error) for r in fed_back] == [
        ("c1", True),
        ("c2", True),
        ("c3", True),
        ("c4", True),
    ]
    assert fed_back[0].content == "Error: disk on fire"
    assert "no tool named 'nope'" in fed_back[1].content
    assert "not valid JSON" in fed_back[2].content
    assert "JSON object" in fed_back[3].content


async def test_tools_are_looked_up_per_agent_and_sent_to_the_model() -> None:
    provider = ScriptedProvider()
    provider.script(Text("hi"))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("go"))
    await within(sub.run.wait())
    assert [t.name for t in provider.requests[0].tools] == ["get_time"]


async def test_get_time_returns_an_iso_timestamp() -> None:
    text = await GET_TIME.handler({})
    assert isinstance(text, str)
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 60


def test_registry_rejects_unknown_and_duplicate_tools() -> None:
    registry = ToolRegistry([GET_TIME])
    with pytest.raises(KeyError, match=r"missing.*known tools: get_time"):
        registry.for_agent(["missing"])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(GET_TIME)
