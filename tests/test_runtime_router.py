"""Routing by (agent, sender): tmp vs topics, switch/new/close, restart, lock-free lookups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.agent_runtime import AgentRuntime
from runtime.errors import UnknownConversationError
from runtime.history import AssistantEntry, UserEntry
from runtime.storage.base import RunCommit, SessionRecord
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.scripted_provider import Gate, ScriptedProvider, Text
from tests.runtime_helpers import make_runtime, msg, wait_for, within


async def test_tmp_conversation_is_reused_and_never_reaches_storage(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    one = await runtime.submit("bot", "telegram:user:1", msg("a"))
    await within(one.run.wait())
    two = await runtime.submit("bot", "telegram:user:1", msg("b"))
    await within(two.run.wait())
    assert one.conversation is two.conversation
    assert one.conversation.is_tmp
    assert await storage.list_sessions("bot", "telegram:user:1") == []
    assert one.conversation.pending == []


async def test_switch_topic_takes_effect_for_the_next_message_not_mid_run(
    storage: SqliteStorage,
) -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(gate, Text("tmp reply"))
    runtime = make_runtime(provider, storage=storage)
    first = await runtime.submit("bot", "u", msg("in tmp"))
    await within(gate.reached.wait())
    topic = await runtime.switch_topic("bot", "u", "travel")
    assert topic is not first.conversation
    nxt = await runtime.submit("bot", "u", msg("in topic"))
    assert nxt.outcome == "started"  # not steered into the tmp run
    assert nxt.conversation is topic
    gate.release()
    await within(first.run.wait())
    await within(nxt.run.wait())
    assert [e.text for e in first.conversation.history if isinstance(e, UserEntry)] == ["in tmp"]
    assert [e.text for e in topic.history if isinstance(e, UserEntry)] == ["in topic"]
    [record] = await storage.list_sessions("bot", "u")
    assert record.topic_key == "travel"


async def test_active_topic_and_history_survive_a_restart(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    await runtime.switch_topic("bot", "u", "work")
    sub = await runtime.submit("bot", "u", msg("remember 42"))
    await within(sub.run.wait())
    await runtime.shutdown(grace=1)

    restarted = make_runtime(ScriptedProvider(), storage=storage)
    conv = await restarted.conversation_for("bot", "u")
    assert conv.topic_key == "work"
    assert conv.id == sub.conversation.id
    assert [type(e) for e in conv.history] == [UserEntry, AssistantEntry]
    assert conv.history[0] == UserEntry(text="remember 42", speaker=msg("x").speaker)


async def test_switch_topic_resumes_the_newest_stored_session(storage: SqliteStorage) -> None:
    for sid, text, updated in (("s-old", "old", 100.0), ("s-new", "newer", 200.0)):
        record = SessionRecord(
            id=sid,
            agent="bot",
            sender="u",
            topic_key="k",
            title=None,
            created_at=updated,
            updated_at=updated,
        )
        await storage.commit_run(RunCommit(session=record, entries=[UserEntry(text=text)]))
    runtime = make_runtime(ScriptedProvider(), storage=storage)
    conv = await runtime.switch_topic("bot", "u", "k")
    assert conv.id == "s-new"
    assert conv.history == [UserEntry(text="newer")]
    assert await storage.get_active_topic("bot", "u") == "k"
    missing = await runtime.switch_topic("bot", "u", "never-seen")
    assert missing.history == []
    assert missing.topic_key == "never-seen"


async def test_new_drops_tmp_and_deactivates_topic(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    tmp = await runtime.conversation_for("bot", "u")
    await runtime.switch_topic("bot", "u", "t")
    await runtime.new("bot", "u")
    assert await storage.get_active_topic("bot", "u") is None
    fresh = await runtime.conversation_for("bot", "u")
    assert fresh.is_tmp
    assert fresh is not tmp
    with pytest.raises(UnknownConversationError):
        runtime.router.get(tmp.id)


async def test_new_cancels_a_running_tmp_conversation() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(gate)
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "u", msg("a"))
    await within(gate.reached.wait())
    await runtime.new("bot", "u")
    assert (await within(sub.run.wait())).stop_reason == "cancelled"


async def test_close_cancels_the_run_and_storage_keeps_it(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("partial "), gate)
    runtime = make_runtime(provider, storage=storage)
    sub = await runtime.submit("bot", "discord:thread:9", msg("hi"), topic="9")
    await within(gate.reached.wait())
    await within(runtime.close(sub.conversation.id))
    assert sub.run.done is not None
    assert sub.run.done.stop_reason == "cancelled"
    assert runtime.router.find(sub.conversation.id) is None
    stored = await storage.load_context(sub.conversation.id)
    assert stored[-1] == AssistantEntry(text="partial ", interrupted=True)


async def test_lookups_never_wait_on_a_running_conversations_lock(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(gate, Text("slow"))
    runtime = make_runtime(provider, storage=storage)
    sub = await runtime.submit("bot", "u", msg("slow one"), topic="t")
    await within(gate.reached.wait())
    assert sub.conversation.lock.locked()
    # every routing call completes while the run holds the lock
    assert await asyncio.wait_for(runtime.conversation_for("bot", "u"), 0.5) is sub.conversation
    steer = await asyncio.wait_for(runtime.submit("bot", "u", msg("more")), 0.5)
    assert steer.outcome == "steered"
    assert await asyncio.wait_for(runtime.switch_topic("bot", "u", "other"), 0.5)
    topics = await asyncio.wait_for(runtime.topics("bot", "u"), 0.5)
    assert {t.key for t in topics} == {"t", "other"}
    await asyncio.wait_for(runtime.status(sub.conversation), 0.5)
    gate.release()
    await within(sub.run.wait())


async def test_threads_are_topics_keyed_by_thread(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    runtime = make_runtime(provider, storage=storage)
    a = await runtime.submit("bot", "slack:T1:thread:C1:1.1", msg("x", "ann"), topic="C1:1.1")
    await within(a.run.wait())
    b = await runtime.submit("bot", "slack:T1:thread:C1:1.1", msg("y", "bob"), topic="C1:1.1")
    await within(b.run.wait())
    assert a.conversation is b.conversation
    speakers = [
        e.speaker.name for e in a.conversation.history if isinstance(e, UserEntry) if e.speaker
    ]
    assert speakers == ["Ann", "Bob"]
    [record] = await storage.list_sessions("bot", "slack:T1:thread:C1:1.1")
    assert record.topic_key == "C1:1.1"


async def test_a_run_commits_its_entries_together(storage: SqliteStorage) -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("one"), gate, Text(" two"))
    runtime: AgentRuntime = make_runtime(provider, storage=storage)
    sub = await runtime.submit("bot", "u", msg("hi"), topic="t")
    await within(gate.reached.wait())
    # mid-run nothing of this run is in storage yet
    assert await storage.find_session("bot", "u", "t") is None
    gate.release()
    await within(sub.run.wait())
    assert [type(e) for e in await storage.load_entries(sub.conversation.id)] == [
        UserEntry,
        AssistantEntry,
    ]
    await wait_for(lambda: sub.conversation.title is not None)
    record = await storage.get_session(sub.conversation.id)
    assert record is not None
    assert record.title == "Scripted Title"  # titles of topics are persisted


class CountingStorage(SqliteStorage):
    """Counts the router's reads of active topics."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.single_reads = 0
        self.bulk_reads = 0

    async def get_active_topic(self, agent: str, sender: str) -> str | None:
        self.single_reads += 1
        return await super().get_active_topic(agent, sender)

    async def active_topics(self) -> dict[tuple[str, str], str]:
        self.bulk_reads += 1
        return await super().active_topics()


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[CountingStorage]:
    store = CountingStorage(tmp_path / "counted.db")
    await store.open()
    yield store
    await store.close()


def evict_all(runtime: AgentRuntime) -> None:
    runtime.router.evict_idle(now=float("inf"), tmp_ttl=0, topic_ttl=0)


async def test_active_topics_are_read_once_for_every_pair(counting: CountingStorage) -> None:
    await counting.set_active_topic("bot", "u1", "kept")
    runtime = make_runtime(ScriptedProvider(), storage=counting)
    assert (await runtime.conversation_for("bot", "u2")).is_tmp
    assert (await runtime.conversation_for("bot", "u1")).topic_key == "kept"
    assert (await runtime.conversation_for("bot", "u3")).is_tmp
    assert (counting.bulk_reads, counting.single_reads) == (1, 0)


async def test_the_cached_active_topic_follows_topic_and_new(counting: CountingStorage) -> None:
    runtime = make_runtime(ScriptedProvider(), storage=counting)
    await runtime.switch_topic("bot", "u", "work")
    evict_all(runtime)  # the pair's routes are gone: the next lookup uses the cache
    assert (await runtime.conversation_for("bot", "u")).topic_key == "work"
    await runtime.new("bot", "u")
    evict_all(runtime)
    assert (await runtime.conversation_for("bot", "u")).is_tmp
    assert counting.single_reads == 0


async def test_a_reload_from_another_replica_reads_the_pair_again(
    counting: CountingStorage,
) -> None:
    runtime = make_runtime(ScriptedProvider(), storage=counting)
    assert (await runtime.conversation_for("bot", "u")).is_tmp
    await counting.set_active_topic("bot", "u", "moved")  # as another replica would
    runtime.router.reload_sender("u")
    evict_all(runtime)
    assert (await runtime.conversation_for("bot", "u")).topic_key == "moved"
    assert counting.single_reads == 1
