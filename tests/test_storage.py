"""SqliteStorage: every method, atomicity, migrations, persistence and crash safety."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiosqlite
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
from runtime.storage.base import EventRecord, RunCommit, SessionRecord, Storage, UsageRecord
from runtime.storage.schema import LATEST_VERSION, MIGRATIONS
from runtime.storage.sqlite import PROCESSED_TTL, SqliteStorage

REPO_ROOT = Path(__file__).resolve().parents[1]
CRASH_CHILD = Path(__file__).with_name("storage_crash_child.py")
TIMEOUT = 20.0

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


@contextlib.asynccontextmanager
async def opened(
    path: Path | str, *, busy_timeout: float = 5.0, clock: Callable[[], float] = time.time
) -> AsyncIterator[SqliteStorage]:
    """An open store, closed even when the test fails (a leaked connection thread would
    keep the test process from exiting)."""
    store = SqliteStorage(path, busy_timeout=busy_timeout, clock=clock)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    async with opened(tmp_path / "gateway.db") as store:
        yield store


async def fetch(path: Path, sql: str) -> list[Any]:
    """Read the file through a connection of its own, not the store's."""
    async with aiosqlite.connect(path) as db:
        return [tuple(row) for row in await db.execute_fetchall(sql)]


# -- lifecycle, schema, errors ----------------------------------------------------------


async def test_open_creates_directory_in_wal_mode_at_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "gateway.db"
    store: Storage = SqliteStorage(path)
    try:
        await store.open()
        await store.open()  # a second open is a no-op
        assert store.is_open
    finally:
        await store.close()
    await store.close()
    assert not store.is_open
    assert await fetch(path, "PRAGMA journal_mode") == [("wal",)]
    assert await fetch(path, "PRAGMA user_version") == [(LATEST_VERSION,)]


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


async def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with aiosqlite.connect(path) as db:
        await db.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    store = SqliteStorage(path)
    with pytest.raises(StorageError) as info:
        await store.open()
    assert f"version {LATEST_VERSION + 1}" in str(info.value)
    assert f"version {LATEST_VERSION} " in str(info.value)
    assert not store.is_open


async def test_not_a_database_names_file_and_cause(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match=r"junk\.db.*not a database") as info:
        await SqliteStorage(path).open()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_calls_on_a_closed_store_raise_storage_error(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "g.db")
    with pytest.raises(StorageError, match="not open"):
        await store.get_session("s1")
    await store.open()
    await store.close()
    with pytest.raises(StorageError, match="not open"):
        await store.commit_run(RunCommit(session=session()))


async def test_locked_database_becomes_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with opened(path, busy_timeout=0) as store:
        async with aiosqlite.connect(path, isolation_level=None) as other:
            await other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StorageError, match=r"g\.db.*commit a run.*locked"):
                await store.commit_run(RunCommit(session=session(), entries=turn(1)))
            await other.execute("ROLLBACK")
        await store.commit_run(RunCommit(session=session(), entries=turn(1)))
        assert await store.load_entries("s1") == turn(1)


async def test_memory_database_works() -> None:
    async with opened(":memory:") as store:
        await store.commit_run(RunCommit(session=session(), entries=turn(1)))
        assert await store.load_entries("s1") == turn(1)


# -- runs, entries, sessions --------------------------------------------------------------


async def test_every_entry_kind_round_trips(storage: SqliteStorage) -> None:
    await storage.commit_run(RunCommit(session=session(), entries=EVERY_KIND))
    assert await storage.load_entries("s1") == EVERY_KIND
    assert await storage.load_context("s1") == EVERY_KIND
    assert await storage.load_entries("unknown") == []


async def test_commit_upserts_session_and_continues_seq(storage: SqliteStorage) -> None:
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
    assert await fetch(storage_path(storage), "SELECT session_id, kind, data FROM events") == [
        ("s1", "run_end", '{"stop": "text"}')
    ]


def storage_path(store: SqliteStorage) -> Path:
    return Path(store.path)


async def test_find_and_list_sessions_newest_first(storage: SqliteStorage) -> None:
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


async def test_set_title(storage: SqliteStorage) -> None:
    await storage.commit_run(RunCommit(session=session()))
    await storage.set_title("s1", "Weather in Zürich")
    stored = await storage.get_session("s1")
    assert stored is not None
    assert stored.title == "Weather in Zürich"
    assert stored.updated_at == 2.0
    await storage.set_title("missing", "ignored")  # not stored yet: nothing to update
    assert await storage.get_session("missing") is None


async def test_usage_totals_of_unknown_session_are_zero(storage: SqliteStorage) -> None:
    assert await storage.usage_totals("nothing") == (0, 0)


async def test_concurrent_commits_never_interleave(storage: SqliteStorage) -> None:
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


async def test_compaction_writes_archive_and_rebuilds_context(storage: SqliteStorage) -> None:
    await storage.commit_run(RunCommit(session=session(), entries=turn(1) + turn(2) + turn(3)))
    first = CompactMarker(summary="S1", retained=2, archived=tuple(turn(1) + turn(2)))
    await storage.commit_run(RunCommit(session=session(), entries=[first, *turn(4)]))
    assert await storage.load_context("s1") == [SummaryEntry(text="S1"), *turn(3), *turn(4)]
    assert await storage.load_entries("s1") == turn(1) + turn(2) + turn(3) + [first] + turn(4)
    archives = await fetch(storage_path(storage), "SELECT session_id, summary FROM archives")
    assert archives == [("s1", "S1")]

    second = CompactMarker(summary="S2", retained=2, archived=tuple(turn(3)))
    await storage.commit_run(RunCommit(session=session(), entries=[second, *turn(5)]))
    assert await storage.load_context("s1") == [SummaryEntry(text="S2"), *turn(4), *turn(5)]
    log = await storage.load_entries("s1")
    assert [e for e in log if isinstance(e, CompactMarker)] == [first, second]
    assert len(await fetch(storage_path(storage), "SELECT id FROM archives")) == 2


# -- atomicity --------------------------------------------------------------------------


async def test_failed_serialisation_leaves_nothing_behind(storage: SqliteStorage) -> None:
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


async def test_failed_insert_after_entries_leaves_nothing_behind(storage: SqliteStorage) -> None:
    bad_usage = UsageRecord(model="m", prompt_tokens=cast(Any, object()), completion_tokens=1, at=1)
    marker = CompactMarker(summary="S", retained=0, archived=(UserEntry(text="old"),))
    with pytest.raises(StorageError) as info:
        await storage.commit_run(
            RunCommit(session=session(), entries=[*turn(1), marker], usage=[bad_usage])
        )
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert await storage.get_session("s1") is None
    counts = await fetch(
        storage_path(storage),
        "SELECT (SELECT COUNT(*) FROM entries) + (SELECT COUNT(*) FROM archives)"
        " + (SELECT COUNT(*) FROM usage) + (SELECT COUNT(*) FROM sessions)",
    )
    assert counts == [(0,)]
    # The failed transaction was rolled back, so the connection goes on working.
    await storage.commit_run(RunCommit(session=session(), entries=turn(1)))
    assert await storage.load_entries("s1") == turn(1)


# -- router state, bindings, deduplication ------------------------------------------------


async def test_active_topic(storage: SqliteStorage) -> None:
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


async def test_thread_bindings(storage: SqliteStorage) -> None:
    assert await storage.get_binding("discord", "99") is None
    await storage.bind_thread("discord", "99", "s1")
    await storage.bind_thread("slack", "99", "s2")
    assert await storage.get_binding("discord", "99") == "s1"
    await storage.bind_thread("discord", "99", "s3")
    assert await storage.get_binding("discord", "99") == "s3"
    assert await storage.get_binding("slack", "99") == "s2"


async def test_mark_processed_dedups_across_reopen_and_prunes(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / "g.db"

    def clock() -> float:
        return now[0]

    async with opened(path, clock=clock) as store:
        assert await store.mark_processed("telegram", "1") is True
        assert await store.mark_processed("telegram", "1") is False
        assert await store.mark_processed("slack", "1") is True

    now[0] += PROCESSED_TTL - 60
    async with opened(path, clock=clock) as store:
        assert await store.mark_processed("telegram", "1") is False

    now[0] += 120  # past the retention: pruned at open, so accepted again
    async with opened(path, clock=clock) as store:
        assert await store.mark_processed("telegram", "1") is True


# -- persistence and crashes --------------------------------------------------------------


async def test_everything_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    async with opened(path) as store:
        usage = [UsageRecord(model="m", prompt_tokens=3, completion_tokens=4, at=2.0)]
        await store.commit_run(RunCommit(session=session(), entries=EVERY_KIND, usage=usage))
        await store.set_title("s1", "Title")
        await store.set_active_topic("agent", "telegram:user:1", "main")
        await store.bind_thread("telegram", "-100:5", "s1")

    async with opened(path) as again:
        assert await again.get_session("s1") == session(title="Title")
        assert await again.load_entries("s1") == EVERY_KIND
        assert await again.usage_totals("s1") == (3, 4)
        assert await again.get_active_topic("agent", "telegram:user:1") == "main"
        assert await again.get_binding("telegram", "-100:5") == "s1"


async def test_sigkill_mid_commit_keeps_committed_run_only(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CRASH_CHILD),
        str(path),
        "s1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
        assert line == b"READY\n", (await child.communicate())[1].decode()
        # Run B's transaction is open in the child: the write lock is taken.
        async with aiosqlite.connect(path, timeout=0, isolation_level=None) as other:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await other.execute("BEGIN IMMEDIATE")
    finally:
        child.kill()
        await asyncio.wait_for(child.communicate(), TIMEOUT)

    async with opened(path) as store:
        assert await store.get_session("s1") == SessionRecord(
            id="s1",
            agent="agent",
            sender="telegram:user:1",
            topic_key="crash",
            title="Run A",
            created_at=1.0,
            updated_at=2.0,
        )
        assert await store.load_entries("s1") == [
            UserEntry(text="question A"),
            AssistantEntry(text="answer A"),
        ]
        assert await store.usage_totals("s1") == (10, 5)
