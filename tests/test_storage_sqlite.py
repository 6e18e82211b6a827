"""SqliteStorage only: the file, WAL, schema versions, unopenable paths, locks, crashes.

What every backend shares is in test_storage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from runtime.errors import StorageError
from runtime.history import AssistantEntry, Entry, UserEntry
from runtime.storage.base import InboxRecord, RunCommit, SessionRecord, Storage
from runtime.storage.schema import LATEST_VERSION, MIGRATIONS
from runtime.storage.sqlite import SqliteStorage

REPO_ROOT = Path(__file__).resolve().parents[1]
CRASH_CHILD = Path(__file__).with_name("storage_crash_child.py")
TIMEOUT = 20.0


def session() -> SessionRecord:
    return SessionRecord(
        id="s1",
        agent="agent",
        sender="telegram:user:1",
        topic_key="main",
        title=None,
        created_at=1.0,
        updated_at=2.0,
    )


def turn(n: int) -> list[Entry]:
    return [UserEntry(text=f"q{n}"), AssistantEntry(text=f"a{n}")]


@contextlib.asynccontextmanager
async def opened(path: Path | str, *, busy_timeout: float = 5.0) -> AsyncIterator[SqliteStorage]:
    store = SqliteStorage(path, busy_timeout=busy_timeout)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def fetch(path: Path, sql: str) -> list[Any]:
    """Read the file through a connection of its own, not the store's."""
    async with aiosqlite.connect(path) as db:
        return [tuple(row) for row in await db.execute_fetchall(sql)]


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
    with pytest.raises(
        StorageError, match=r"junk\.db: it is not a SQLite database; set storage\.path"
    ) as info:
        await SqliteStorage(path).open()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


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


async def test_a_lock_held_elsewhere_is_waited_out_while_the_loop_runs_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "g.db"
    async with opened(path, busy_timeout=TIMEOUT) as store:
        async with aiosqlite.connect(path, isolation_level=None) as other:
            await other.execute("BEGIN IMMEDIATE")
            commit = asyncio.create_task(
                store.commit_run(RunCommit(session=session(), entries=turn(1)))
            )
            ticks = 0
            # The commit waits for the lock on the loop, not inside SQLite: other tasks
            # keep running meanwhile (a loop blocked in SQLite would never tick).
            async with asyncio.timeout(TIMEOUT):
                while ticks < 20:
                    await asyncio.sleep(0.001)
                    ticks += 1
            assert not commit.done()
            await other.execute("ROLLBACK")
            await asyncio.wait_for(commit, TIMEOUT)
        assert await store.load_entries("s1") == turn(1)


async def test_the_wal_is_checkpointed_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runtime.storage.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module._Checkpoints, "EVERY", 10)
    path = tmp_path / "g.db"
    async with opened(path) as store:
        # Everything so far (the schema too) is in the WAL: the file itself has no pages.
        before = path.stat().st_size
        for n in range(12):
            await store.accept_inbound([inbox_record(n)])
        checkpoints = store._checkpoints
        assert checkpoints is not None
        assert checkpoints._task is not None
        await asyncio.wait_for(checkpoints._task, TIMEOUT)
        assert path.stat().st_size > before  # the checkpoint copied pages into the file
        assert len(await store.unanswered_inbound()) == 12


def inbox_record(n: int) -> InboxRecord:
    return InboxRecord(
        id=f"telegram:{n}", platform="telegram", payload="{}", state="accepted", accepted_at=n
    )


async def test_memory_database_works() -> None:
    async with opened(":memory:") as store:
        await store.commit_run(RunCommit(session=session(), entries=turn(1)))
        assert await store.load_entries("s1") == turn(1)


async def test_directory_path_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        await SqliteStorage(tmp_path).open()
    message = str(info.value)
    assert message == (
        f"cannot open the SQLite database at {tmp_path}: it is a directory; "
        "set storage.path to a file."
    )
    assert info.value.__cause__ is not None


async def test_unwritable_directory_names_path_and_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = blocker / "gateway.db"  # its parent cannot be created: a file is in the way
    with pytest.raises(
        StorageError,
        match=rf"cannot open the SQLite database at {path}: .*"
        r"set storage\.path",
    ) as info:
        await SqliteStorage(path).open()
    assert isinstance(info.value.__cause__, OSError)


async def test_leases_run_on_the_stores_clock(tmp_path: Path) -> None:
    # SQLite has no server clock: leases read the clock the store was given.
    now = [1000.0]
    store = SqliteStorage(tmp_path / "g.db", clock=lambda: now[0])
    await store.open()
    try:
        assert await store.try_acquire_lease("conv", "a", 10.0)
        assert await fetch(tmp_path / "g.db", "SELECT expires_at FROM conversation_leases") == [
            (1010.0,)
        ]
        now[0] = 1009.0
        assert not await store.try_acquire_lease("conv", "b", 10.0)
        assert await store.renew_leases("a", 10.0) == ["conv"]  # now until 1019
        now[0] = 1019.5
        assert await store.renew_leases("a", 10.0) == []
        assert await store.try_acquire_lease("conv", "b", 10.0)
    finally:
        await store.close()


async def test_version_1_file_migrates_to_the_inbox(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for statement in MIGRATIONS[0].sqlite:
            await db.execute(statement)
        await db.execute("INSERT INTO processed VALUES ('telegram', '1', 5.0)")
        await db.execute("PRAGMA user_version = 1")
    async with opened(path) as store:
        record = InboxRecord(
            id="telegram:1", platform="telegram", payload="{}", state="accepted", accepted_at=1
        )
        assert await store.accept_inbound([record]) == [True]
    assert await fetch(path, "PRAGMA user_version") == [(LATEST_VERSION,)]
    tables = await fetch(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    assert ("inbox",) in tables
    assert ("processed",) not in tables


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
