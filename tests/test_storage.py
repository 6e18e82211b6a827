"""Every storage backend: every method, atomicity, the durable inbox, persistence.

Each test runs against SQLite and PostgreSQL (``storage_factory`` in conftest.py); what
only one backend has (WAL files, crash children, schema files) is tested in
test_storage_sqlite.py and test_storage_postgres.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from runtime.errors import StorageError
from runtime.history import (
    AssistantEntry,
    CompactMarker,
    Entry,
    Image,
    Speaker,
    StoredEntry,
    SummaryEntry,
    ToolCall,
    ToolResultEntry,
    UserEntry,
)
from runtime.storage.base import (
    EventRecord,
    InboxRecord,
    RunCommit,
    SessionRecord,
    UsageRecord,
)
from tests.storage_backends import Backend, StoreUnderTest

TIMEOUT = 10.0

EVERY_KIND: list[StoredEntry] = [
    UserEntry(
        text="look at this",
        speaker=Speaker(name="Ada", id="discord:user:7"),
        images=(Image(media_type="image/png", data_base64="iVBORw0KGgo="),),
    ),
    UserEntry(text="and also", steered=True),
    AssistantEntry(
        text="Checking.",
        thinking="the user wants weather",
        tool_calls=(
            ToolCall(id="c1", name="weather", arguments='{"city": "Zürich"}'),
            ToolCall(id="c2", name="time", arguments="{}"),
        ),
    ),
    ToolResultEntry(call_id="c1", name="weather", content="sunny"),
    ToolResultEntry(call_id="c2", name="time", content="boom", is_error=True),
    AssistantEntry(text="It is sun", interrupted=True),
    SummaryEntry(text="earlier: greetings"),
]


def session(
    session_id: str = "s1",
    *,
    agent: str = "agent",
    sender: str = "telegram:user:1",
    topic_key: str = "main",
    title: str | None = None,
    updated_at: float = 2.0,
) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        agent=agent,
        sender=sender,
        topic_key=topic_key,
        title=title,
        created_at=1.0,
        updated_at=updated_at,
    )


def turn(n: int) -> list[Entry]:
    return [UserEntry(text=f"q{n}"), AssistantEntry(text=f"a{n}")]


def inbox(n: int, *, at: float = 100.0, platform: str = "telegram") -> InboxRecord:
    return InboxRecord(
        id=f"{platform}:{n}",
        platform=platform,
        payload=f'{{"text": "m{n}"}}',
        state="accepted",
        accepted_at=at,
    )


@pytest.fixture
async def storage(storage_factory: Backend) -> AsyncIterator[StoreUnderTest]:
    async with storage_factory.opened() as store:
        yield store


# -- lifecycle ---------------------------------------------------------------------------


async def test_open_twice_and_close_twice(storage_factory: Backend) -> None:
    store = storage_factory.new_store()
    assert not store.is_open
    try:
        await store.open()
        await store.open()  # a second open is a no-op
        assert store.is_open
    finally:
        await store.close()
    await store.close()
    assert not store.is_open


async def test_calls_on_a_closed_store_raise_storage_error(storage_factory: Backend) -> None:
    store = storage_factory.new_store()
    with pytest.raises(StorageError, match="not open"):
        await store.find_session("a", "b", "c")
    await store.open()
    await store.close()
    with pytest.raises(StorageError, match="not open"):
        await store.commit_run(RunCommit(session=session()))


# -- runs, entries, sessions --------------------------------------------------------------


async def test_every_entry_kind_round_trips(storage: StoreUnderTest) -> None:
    await storage.commit_run(RunCommit(session=session(), entries=EVERY_KIND))
    assert await storage.load_entries("s1") == EVERY_KIND
    assert await storage.load_context("s1") == EVERY_KIND
    assert await storage.load_entries("unknown") == []


async def test_commit_upserts_session_and_continues_seq(
    storage: StoreUnderTest, storage_factory: Backend
) -> None:
    usage = [UsageRecord(model="m", prompt_tokens=100, completion_tokens=7, at=2.0)]
    events = [EventRecord(kind="run_end", data_json='{"stop": "text"}', at=2.0)]
    await storage.commit_run(
        RunCommit(session=session(title="First"), entries=turn(1), usage=usage, events=events)
    )
    assert await storage.get_session("s1") == session(title="First")
    # A later run without a title keeps the stored one; updated_at moves, created_at not.
    later = dataclasses.replace(session(), created_at=9.0, updated_at=5.0)
    await storage.commit_run(RunCommit(session=later, entries=turn(2), usage=usage))
    assert await storage.get_session("s1") == session(title="First", updated_at=5.0)
    assert await storage.load_entries("s1") == turn(1) + turn(2)
    assert await storage.usage_totals("s1") == (200, 14)
    await storage.commit_run(RunCommit(session=session(title="Renamed", updated_at=6.0)))
    assert (await storage.get_session("s1")) == session(title="Renamed", updated_at=6.0)
    assert await storage_factory.fetch("SELECT session_id, kind, data FROM events") == [
        ("s1", "run_end", '{"stop": "text"}')
    ]


async def test_find_and_list_sessions_newest_first(storage: StoreUnderTest) -> None:
    await storage.commit_run(RunCommit(session=session("old", updated_at=2.0)))
    await storage.commit_run(RunCommit(session=session("new", updated_at=3.0)))
    await storage.commit_run(RunCommit(session=session("other", topic_key="x", updated_at=4.0)))
    await storage.commit_run(RunCommit(session=session("bob", sender="telegram:user:2")))
    await storage.commit_run(RunCommit(session=session("agent2", agent="b")))
    found = await storage.find_session("agent", "telegram:user:1", "main")
    assert found is not None
    assert found.id == "new"
    assert await storage.find_session("agent", "telegram:user:1", "nope") is None
    listed = await storage.list_sessions("agent", "telegram:user:1")
    assert [s.id for s in listed] == ["other", "new", "old"]
    assert await storage.list_sessions("agent", "telegram:user:3") == []
    # Touching the old session makes it the newest.
    await storage.commit_run(RunCommit(session=session("old", updated_at=10.0)))
    found = await storage.find_session("agent", "telegram:user:1", "main")
    assert found is not None
    assert found.id == "old"


async def test_usage_totals_of_unknown_session_are_zero(storage: StoreUnderTest) -> None:
    assert await storage.usage_totals("nothing") == (0, 0)


async def test_concurrent_commits_never_interleave(storage: StoreUnderTest) -> None:
    await asyncio.gather(
        *(
            storage.commit_run(RunCommit(session=session(updated_at=float(n)), entries=turn(n)))
            for n in range(10)
        )
    )
    entries = await storage.load_entries("s1")
    assert len(entries) == 20
    for user, assistant in zip(entries[::2], entries[1::2], strict=True):
        assert isinstance(user, UserEntry)
        assert isinstance(assistant, AssistantEntry)
        assert assistant.text == "a" + user.text[1:]


# -- compaction -------------------------------------------------------------------------


async def test_compaction_writes_archive_and_rebuilds_context(
    storage: StoreUnderTest, storage_factory: Backend
) -> None:
    await storage.commit_run(RunCommit(session=session(), entries=turn(1) + turn(2) + turn(3)))
    first = CompactMarker(summary="S1", retained=2, archived=tuple(turn(1) + turn(2)))
    await storage.commit_run(RunCommit(session=session(), entries=[first, *turn(4)]))
    assert await storage.load_context("s1") == [SummaryEntry(text="S1"), *turn(3), *turn(4)]
    assert await storage.load_entries("s1") == turn(1) + turn(2) + turn(3) + [first] + turn(4)
    archives = await storage_factory.fetch("SELECT session_id, summary FROM archives")
    assert archives == [("s1", "S1")]

    second = CompactMarker(summary="S2", retained=2, archived=tuple(turn(3)))
    await storage.commit_run(RunCommit(session=session(), entries=[second, *turn(5)]))
    assert await storage.load_context("s1") == [SummaryEntry(text="S2"), *turn(4), *turn(5)]
    log = await storage.load_entries("s1")
    assert [e for e in log if isinstance(e, CompactMarker)] == [first, second]
    assert len(await storage_factory.fetch("SELECT id FROM archives")) == 2


# -- atomicity --------------------------------------------------------------------------


async def test_failed_serialisation_leaves_nothing_behind(storage: StoreUnderTest) -> None:
    await storage.commit_run(RunCommit(session=session(title="Kept"), entries=turn(1)))
    unencodable = UserEntry(text=cast(Any, object()))
    for target in ("s1", "fresh"):
        with pytest.raises(StorageError, match=rf"encode entry \d+ of session '{target}'"):
            await storage.commit_run(
                RunCommit(
                    session=session(target, title="Lost", updated_at=9.0),
                    entries=[*turn(2), unencodable],
                )
            )
    assert await storage.get_session("s1") == session(title="Kept")
    assert await storage.get_session("fresh") is None
    assert await storage.load_entries("s1") == turn(1)
    assert await storage.load_entries("fresh") == []


async def test_failed_insert_after_entries_leaves_nothing_behind(
    storage: StoreUnderTest, storage_factory: Backend
) -> None:
    bad_usage = UsageRecord(model="m", prompt_tokens=cast(Any, object()), completion_tokens=1, at=1)
    marker = CompactMarker(summary="S", retained=0, archived=(UserEntry(text="old"),))
    with pytest.raises(StorageError) as info:
        await storage.commit_run(
            RunCommit(session=session(), entries=[*turn(1), marker], usage=[bad_usage])
        )
    assert info.value.__cause__ is not None  # the library's error, converted in one place
    assert await storage.get_session("s1") is None
    counts = await storage_factory.fetch(
        "SELECT (SELECT COUNT(*) FROM entries) + (SELECT COUNT(*) FROM archives)"
        " + (SELECT COUNT(*) FROM usage) + (SELECT COUNT(*) FROM sessions)",
    )
    assert counts == [(0,)]
    # The failed transaction was rolled back, so the connection goes on working.
    await storage.commit_run(RunCommit(session=session(), entries=turn(1)))
    assert await storage.load_entries("s1") == turn(1)


# -- router state, bindings ------------------------------------------------------------


async def test_active_topic(storage: StoreUnderTest) -> None:
    assert await storage.get_active_topic("agent", "u1") is None
    await storage.set_active_topic("agent", "u1", "work")
    await storage.set_active_topic("agent", "u2", "play")
    assert await storage.get_active_topic("agent", "u1") == "work"
    await storage.set_active_topic("agent", "u1", "home")
    assert await storage.get_active_topic("agent", "u1") == "home"
    await storage.set_active_topic("agent", "u1", None)
    assert await storage.get_active_topic("agent", "u1") is None
    assert await storage.get_active_topic("agent", "u2") == "play"
    assert await storage.get_active_topic("other", "u2") is None


async def test_thread_bindings(storage: StoreUnderTest) -> None:
    assert await storage.get_binding("discord", "99") is None
    await storage.bind_thread("discord", "99", "s1")
    await storage.bind_thread("slack", "99", "s2")
    assert await storage.get_binding("discord", "99") == "s1"
    await storage.bind_thread("discord", "99", "s3")
    assert await storage.get_binding("discord", "99") == "s3"
    assert await storage.get_binding("slack", "99") == "s2"


# -- the durable inbox ------------------------------------------------------------------


async def test_accept_inbound_reports_duplicates_per_record(storage: StoreUnderTest) -> None:
    assert await storage.accept_inbound([inbox(1), inbox(2)]) == [True, True]
    # Seen before, new, and the same id twice in one batch.
    assert await storage.accept_inbound([inbox(2), inbox(3), inbox(3)]) == [False, True, False]
    assert await storage.accept_inbound([inbox(1, platform="slack")]) == [True]
    assert await storage.accept_inbound([]) == []
    # A duplicate never overwrites what was accepted first.
    changed = dataclasses.replace(inbox(1), payload='{"text": "other"}', accepted_at=1.0)
    assert await storage.accept_inbound([changed]) == [False]
    assert (await storage.unanswered_inbound())[0] == inbox(1)


async def test_accept_inbound_is_one_transaction(
    storage: StoreUnderTest, storage_factory: Backend
) -> None:
    broken = dataclasses.replace(inbox(2), payload=cast(Any, None))  # violates NOT NULL
    with pytest.raises(StorageError):
        await storage.accept_inbound([inbox(1), broken])
    assert await storage_factory.fetch("SELECT id FROM inbox") == []
    assert await storage.accept_inbound([inbox(1)]) == [True]


async def test_unanswered_oldest_first_until_settled(storage: StoreUnderTest) -> None:
    await storage.accept_inbound([inbox(5, at=105.0), inbox(1, at=101.0)])
    # Accepted in the same instant: kept in the order they were accepted.
    await storage.accept_inbound([inbox(9, at=103.0), inbox(3, at=103.0), inbox(2, at=102.0)])
    assert [r.id for r in await storage.unanswered_inbound()] == [
        "telegram:1",
        "telegram:2",
        "telegram:9",
        "telegram:3",
        "telegram:5",
    ]
    await storage.settle_inbound(["telegram:9", "telegram:unknown"], "answered")
    await storage.settle_inbound(["telegram:1"], "expired")
    await storage.settle_inbound([], "expired")
    unanswered = await storage.unanswered_inbound()
    assert unanswered == [inbox(2, at=102.0), inbox(3, at=103.0), inbox(5, at=105.0)]
    with pytest.raises(ValueError, match="'answered' or 'expired'"):
        await storage.settle_inbound(["telegram:2"], "accepted")


async def test_commit_run_settles_answered_ids_in_its_transaction(
    storage: StoreUnderTest, storage_factory: Backend
) -> None:
    await storage.accept_inbound([inbox(1), inbox(2), inbox(3)])
    await storage.commit_run(
        RunCommit(session=session(), entries=turn(1), answered=["telegram:1", "telegram:2"])
    )
    assert await storage.unanswered_inbound() == [inbox(3)]
    states = await storage_factory.fetch("SELECT id, state FROM inbox ORDER BY id")
    assert states == [
        ("telegram:1", "answered"),
        ("telegram:2", "answered"),
        ("telegram:3", "accepted"),
    ]
    # A commit that fails leaves its messages unanswered, to be answered again.
    unencodable = UserEntry(text=cast(Any, object()))
    with pytest.raises(StorageError):
        await storage.commit_run(
            RunCommit(session=session(), entries=[unencodable], answered=["telegram:3"])
        )
    assert await storage.unanswered_inbound() == [inbox(3)]


async def test_get_inbound_reads_records_by_id_in_any_state(storage: StoreUnderTest) -> None:
    await storage.accept_inbound([inbox(1, at=10.0), inbox(2, at=20.0), inbox(3, at=30.0)])
    await storage.settle_inbound(["telegram:1"], "answered")
    await storage.settle_inbound(["telegram:3"], "expired")
    # The order asked for (not acceptance order), each id once, unknown ids left out.
    got = await storage.get_inbound(["telegram:3", "telegram:9", "telegram:1", "telegram:3"])
    assert got == [
        dataclasses.replace(inbox(3, at=30.0), state="expired"),
        dataclasses.replace(inbox(1, at=10.0), state="answered"),
    ]
    assert await storage.get_inbound(["telegram:2"]) == [inbox(2, at=20.0)]
    assert await storage.get_inbound([]) == []


async def test_long_id_lists_settle_and_read_in_one_call(storage: StoreUnderTest) -> None:
    # More ids than SQLite allows bound variables in one statement (32766).
    await storage.accept_inbound([inbox(1), inbox(2)])
    ids = [f"telegram:{n}" for n in range(40_000)]
    assert [r.id for r in await storage.get_inbound(ids)] == ["telegram:1", "telegram:2"]
    await storage.settle_inbound(ids, "expired")
    assert await storage.unanswered_inbound() == []


async def test_prune_deletes_only_old_settled_records(storage: StoreUnderTest) -> None:
    await storage.accept_inbound(
        [inbox(1, at=10.0), inbox(2, at=10.0), inbox(3, at=10.0), inbox(4, at=50.0)]
    )
    await storage.settle_inbound(["telegram:1", "telegram:4"], "answered")
    await storage.settle_inbound(["telegram:2"], "expired")
    assert await storage.prune_inbound(before=20.0) == 2  # 1 and 2; 3 is unanswered, 4 new
    assert await storage.prune_inbound(before=20.0) == 0
    assert await storage.unanswered_inbound() == [inbox(3, at=10.0)]
    # A pruned id is forgotten: the same message would be accepted again.
    assert await storage.accept_inbound([inbox(1), inbox(4)]) == [True, False]


# -- replicas: leases and notifications ------------------------------------------------------


async def test_a_lease_has_one_owner_until_it_expires(storage: StoreUnderTest) -> None:
    assert await storage.try_acquire_lease("conv:1", "replica-a", 60.0) is True
    assert await storage.try_acquire_lease("conv:1", "replica-b", 60.0) is False
    assert await storage.try_acquire_lease("conv:1", "replica-a", 60.0) is True  # extends
    assert await storage.try_acquire_lease("conv:2", "replica-b", 60.0) is True
    # A lease whose owner stopped renewing (here: already expired) is taken over.
    assert await storage.try_acquire_lease("conv:3", "replica-a", -1.0) is True
    assert await storage.try_acquire_lease("conv:3", "replica-b", 60.0) is True
    assert await storage.try_acquire_lease("conv:3", "replica-a", 60.0) is False


async def test_renew_keeps_only_unexpired_leases(storage: StoreUnderTest) -> None:
    for key in ("k2", "k1"):
        assert await storage.try_acquire_lease(key, "a", 60.0)
    assert await storage.try_acquire_lease("lapsed", "a", -1.0)
    assert await storage.try_acquire_lease("theirs", "b", 60.0)
    assert await storage.renew_leases("a", 60.0) == ["k1", "k2"]
    assert await storage.renew_leases("nobody", 60.0) == []
    # Renewing with a past ttl lets every lease lapse: then nothing is held any more.
    assert await storage.renew_leases("a", -1.0) == ["k1", "k2"]
    assert await storage.renew_leases("a", 60.0) == []
    assert await storage.try_acquire_lease("k1", "b", 60.0) is True


async def test_release_frees_only_the_owners_lease(storage: StoreUnderTest) -> None:
    assert await storage.try_acquire_lease("conv", "a", 60.0)
    await storage.release_lease("conv", "b")  # not b's: ignored
    assert await storage.try_acquire_lease("conv", "b", 60.0) is False
    await storage.release_lease("conv", "a")
    assert await storage.try_acquire_lease("conv", "b", 60.0) is True
    await storage.release_lease("never-held", "a")


async def test_listen_receives_notifications_until_unlisten(storage: StoreUnderTest) -> None:
    inbox_wakeups: asyncio.Queue[str] = asyncio.Queue()
    other: asyncio.Queue[str] = asyncio.Queue()
    unlisten = await storage.listen("inbox", inbox_wakeups.put_nowait)
    stop_other = await storage.listen("other", other.put_nowait)
    try:
        await storage.notify("inbox", "telegram:1")
        await storage.notify("inbox", "telegram:2")
        await storage.notify("unheard", "x")
        assert await asyncio.wait_for(inbox_wakeups.get(), TIMEOUT) == "telegram:1"
        assert await asyncio.wait_for(inbox_wakeups.get(), TIMEOUT) == "telegram:2"
        await unlisten()
        await unlisten()  # twice is harmless
        await storage.notify("inbox", "after unlisten")
        await storage.notify("other", "marker")
        assert await asyncio.wait_for(other.get(), TIMEOUT) == "marker"
        assert inbox_wakeups.empty()
    finally:
        await stop_other()


# -- persistence --------------------------------------------------------------------------


async def test_everything_persists_across_reopen(storage_factory: Backend) -> None:
    async with storage_factory.opened() as store:
        usage = [UsageRecord(model="m", prompt_tokens=3, completion_tokens=4, at=2.0)]
        await store.commit_run(RunCommit(session=session(), entries=EVERY_KIND, usage=usage))
        await store.commit_run(RunCommit(session=session(title="Title")))
        await store.accept_inbound([inbox(1), inbox(2)])
        await store.settle_inbound(["telegram:1"], "expired")
        await store.set_active_topic("agent", "telegram:user:1", "main")
        await store.bind_thread("telegram", "-100:5", "s1")

    async with storage_factory.opened() as again:
        assert await again.get_session("s1") == session(title="Title")
        assert await again.load_entries("s1") == EVERY_KIND
        assert await again.usage_totals("s1") == (3, 4)
        assert await again.get_active_topic("agent", "telegram:user:1") == "main"
        assert await again.get_binding("telegram", "-100:5") == "s1"
        assert await again.unanswered_inbound() == [inbox(2)]
        assert await again.accept_inbound([inbox(1), inbox(2)]) == [False, False]
