"""What a chat page can read back: visible turns, saving a scratch chat, scratch usage."""

from __future__ import annotations

import pytest

from runtime.errors import ConversationBusyError
from runtime.history import (
    AssistantEntry,
    CompactMarker,
    Speaker,
    StoredEntry,
    SummaryEntry,
    ToolCall,
    ToolResultEntry,
    UserEntry,
)
from runtime.storage.sqlite import SqliteStorage
from runtime.transcript import Turn, join_log, visible_turns
from tests.fakes.scripted_provider import Call, Gate, ScriptedProvider, Text, Usage
from tests.runtime_helpers import make_runtime, msg, within

SENDER = "webchat:user:c1"


def test_visible_turns_leave_out_tool_traffic_and_markers() -> None:
    call = ToolCall(id="c1", name="get_time", arguments="{}")
    entries: list[StoredEntry] = [
        UserEntry(text="what time is it?", speaker=Speaker(name="Ann", id="webchat:a")),
        AssistantEntry(tool_calls=(call,)),
        ToolResultEntry(call_id="c1", name="get_time", content="12:00"),
        AssistantEntry(text="It is noon."),
        CompactMarker(summary="s", retained=2),
        UserEntry(text="and now?", steered=True),
        AssistantEntry(text="", interrupted=True),
        SummaryEntry(text="earlier talk"),
    ]
    assert visible_turns(entries) == [
        Turn(role="user", text="what time is it?", speaker="Ann"),
        Turn(role="assistant", text="It is noon."),
        Turn(role="user", text="and now?"),
        Turn(role="assistant", text="", interrupted=True),
        Turn(role="summary", text="earlier talk"),
    ]


def test_join_log_drops_entries_both_stored_and_pending() -> None:
    a, b, c = UserEntry(text="a"), AssistantEntry(text="b"), UserEntry(text="c")
    assert join_log([a, b], [c]) == [a, b, c]
    assert join_log([a, b], [b, c]) == [a, b, c]
    assert join_log([a], [b, c]) == [a, b, c]
    assert join_log([], [a]) == [a]


async def test_transcript_of_a_topic_is_its_whole_log_plus_the_run_in_flight(
    storage: SqliteStorage,
) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    provider.script(Text("first answer"))
    first = await runtime.submit("bot", SENDER, msg("first"), topic="work")
    await within(first.run.wait())
    gate = Gate()
    provider.script(Text("partial"), gate, Text(" rest"))
    second = await runtime.submit("bot", SENDER, msg("second"), topic="work")
    await within(gate.reached.wait())
    turns = await runtime.transcript(second.conversation)
    assert [(t.role, t.text) for t in turns] == [
        ("user", "first"),
        ("assistant", "first answer"),
        ("user", "second"),  # not committed yet: it comes from the pending entries
    ]
    gate.release()
    await within(second.run.wait())
    turns = await runtime.transcript(second.conversation)
    assert [t.text for t in turns][-1] == "partial rest"


async def test_save_scratch_keeps_the_chat_as_a_topic_and_empties_scratch(
    storage: SqliteStorage,
) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    provider.script(Text("hello back"))
    sub = await runtime.submit("bot", SENDER, msg("hello"))
    await within(sub.run.wait())
    sub.conversation.title = "Greetings"
    saved = await runtime.save_scratch("bot", SENDER, "chat-1")
    assert saved is not None
    assert runtime.router.active_key("bot", SENDER) is None
    assert runtime.router.find(sub.conversation.id) is None  # the scratch slot is empty
    [topic] = await runtime.topics("bot", SENDER)
    assert (topic.key, topic.title, topic.active) == ("chat-1", "Greetings", False)
    resumed = await runtime.switch_topic("bot", SENDER, "chat-1")
    assert [t.text for t in await runtime.transcript(resumed)] == ["hello", "hello back"]
    # Nothing left to keep: an empty scratch is not saved.
    assert await runtime.save_scratch("bot", SENDER, "chat-2") is None


async def test_save_scratch_leaves_the_active_topic_active(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    sub = await runtime.submit("bot", SENDER, msg("scratch words"))
    await within(sub.run.wait())
    await runtime.switch_topic("bot", SENDER, "work")
    assert await runtime.save_scratch("bot", SENDER, "chat-1") is not None
    assert runtime.router.active_key("bot", SENDER) == "work"


async def test_save_scratch_refuses_while_the_scratch_reply_runs(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    gate = Gate()
    provider.script(gate, Text("late"))
    sub = await runtime.submit("bot", SENDER, msg("hi"))
    await within(gate.reached.wait())
    with pytest.raises(ConversationBusyError):
        await runtime.save_scratch("bot", SENDER, "chat-1")
    gate.release()
    await within(sub.run.wait())


async def test_status_counts_tokens_of_a_scratch_conversation() -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider)
    provider.script(Call("get_time"), Usage(prompt=10, completion=2))
    provider.script(Text("noon"), Usage(prompt=15, completion=3))
    first = await runtime.submit("bot", SENDER, msg("time?"))
    await within(first.run.wait())
    gate = Gate()
    provider.script(Usage(prompt=20, completion=4), gate, Text("ok"))
    second = await runtime.submit("bot", SENDER, msg("thanks"))
    await within(gate.reached.wait())
    during = await runtime.status(second.conversation)
    assert (during.prompt_tokens, during.completion_tokens) == (45, 9)
    gate.release()
    await within(second.run.wait())
    after = await runtime.status(second.conversation)
    assert second.conversation.is_tmp
    assert (after.prompt_tokens, after.completion_tokens) == (45, 9)
