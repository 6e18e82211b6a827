"""Compaction on provider-reported prompt size: summary + retained turns, archive, guard."""

from __future__ import annotations

import pytest

from runtime.agent_runtime import AgentRuntime
from runtime.errors import ConversationBusyError, ProviderUnavailableError
from runtime.events import Compacted, RunEvent
from runtime.history import AssistantEntry, CompactMarker, SummaryEntry, UserEntry
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.scripted_provider import Fail, Gate, ScriptedProvider, Text, Usage
from tests.runtime_helpers import collect, make_runtime, msg, within


async def turn(runtime: AgentRuntime, text: str) -> list[RunEvent]:
    sub = await runtime.submit("bot", "u", msg(text), topic="t")
    return await within(collect(sub.run))


def user_texts(entries: object) -> list[str]:
    assert isinstance(entries, list | tuple)
    return [e.text for e in entries if isinstance(e, UserEntry)]


async def test_compaction_keeps_retained_turns_and_resume_rebuilds_them(
    storage: SqliteStorage,
) -> None:
    provider = ScriptedProvider()
    for i, size in enumerate((50, 80, 150, 60), start=1):
        provider.script(Text(f"a{i}"), Usage(size))
    runtime = make_runtime(provider, storage=storage, compact_threshold=100)
    for i in range(1, 4):
        events = await turn(runtime, f"u{i}")
        assert not any(isinstance(e, Compacted) for e in events)
    events = await turn(runtime, "u4")
    [compacted] = [e for e in events if isinstance(e, Compacted)]
    assert compacted.status == "compacted"
    assert compacted.summarised_entries == 4  # u1 a1 u2 a2
    assert compacted.retained_entries == 3  # u3 a3 u4 (the current turn)
    [summary_request] = provider.summary_requests
    assert "User: [Ann] u1" in summary_request.messages[0].text  # type: ignore[union-attr]
    after = provider.requests[-1].messages
    assert isinstance(after[0], SummaryEntry)
    assert after[0].text == "Scripted summary."
    assert user_texts(after) == ["u3", "u4"]

    conv_id = (await runtime.conversation_for("bot", "u")).id
    raw = await storage.load_entries(conv_id)
    [marker] = [e for e in raw if isinstance(e, CompactMarker)]
    assert user_texts(list(marker.archived)) == ["u1", "u2"]
    resumed = await storage.load_context(conv_id)
    assert isinstance(resumed[0], SummaryEntry)
    assert user_texts(resumed) == ["u3", "u4"]
    assert resumed[-1] == AssistantEntry(text="a4")

    restarted = make_runtime(ScriptedProvider(), storage=storage)
    conv = await restarted.conversation_for("bot", "u")
    assert conv.history == resumed


async def test_ineffective_compaction_is_reported_once_and_not_repeated() -> None:
    provider = ScriptedProvider(default=[Text("big"), Usage(500)])
    runtime = make_runtime(provider, compact_threshold=100, compact_retained_turns=1)
    await turn(runtime, "u1")
    events = await turn(runtime, "u2")  # compacts u1, but the next call is still 500
    statuses = [e.status for e in events if isinstance(e, Compacted)]
    assert statuses == ["compacted", "ineffective"]
    for text in ("u3", "u4"):
        events = await turn(runtime, text)
        assert not any(isinstance(e, Compacted) for e in events)
    assert len(provider.summary_requests) == 1


async def test_failed_compaction_goes_on_uncompacted_and_says_so_once() -> None:
    provider = ScriptedProvider(default=[Text("big"), Usage(500)])
    provider.script_summary(Fail(ProviderUnavailableError("down")))
    provider.script_summary(Fail(ProviderUnavailableError("down")))
    runtime = make_runtime(provider, compact_threshold=100, compact_retained_turns=1)
    await turn(runtime, "u1")
    events = await turn(runtime, "u2")
    [failed] = [e for e in events if isinstance(e, Compacted)]
    assert failed.status == "failed"
    assert "down" in failed.detail
    assert events[-1].kind == "done"
    assert events[-1].stop_reason == "text"
    conv = await runtime.conversation_for("bot", "u")
    assert user_texts(conv.history) == ["u1", "u2"]  # uncompacted
    events = await turn(runtime, "u3")  # tried again next run, not announced again
    assert not any(isinstance(e, Compacted) for e in events)
    assert len(provider.summary_requests) == 2


async def test_manual_compact_refuses_while_running_and_works_when_idle() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("a1"))
    provider.script(Text("a2"))
    provider.script(gate, Text("a3"))
    runtime = make_runtime(provider, compact_retained_turns=1)
    await turn(runtime, "u1")
    await turn(runtime, "u2")
    sub = await runtime.submit("bot", "u", msg("u3"), topic="t")
    await within(gate.reached.wait())
    with pytest.raises(ConversationBusyError):
        await runtime.compact(sub.conversation.id)
    gate.release()
    await within(sub.run.wait())
    result = await runtime.compact(sub.conversation.id)
    assert result.status == "compacted"
    assert user_texts(sub.conversation.history) == ["u3"]
    assert isinstance(sub.conversation.history[0], SummaryEntry)
