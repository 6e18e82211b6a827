"""SQLite storage: one aiosqlite connection on one WAL file.

aiosqlite runs every statement of the connection on one worker thread, in order. An
asyncio lock makes each public call a unit on top of that: a run's commit is never
interleaved with another call's statements, so a reader never sees half a run and a
single-statement write never lands inside (and dies with) another call's transaction.
Writes of a run go through ``commit_run`` in one ``BEGIN IMMEDIATE`` transaction; a crash
loses at most the transaction in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from runtime.errors import StorageError
from runtime.storage.base import NotifyCallback, Unlisten
from runtime.storage.dialect import Dialect, Row
from runtime.storage.local_channels import LocalChannels
from runtime.storage.schema import LATEST_VERSION, VersionKeeping, migrate
from runtime.storage.sql import SqlStore

_log = logging.getLogger(__name__)

_MEMORY = ":memory:"

# The lease clock as a SQL function: the store's clock, so leases read the same time
# as everything else the store writes (and a test's clock moves them too).
_CLOCK_FUNCTION = "agent_gateway_now"

_VERSION = VersionKeeping(
    dialect="sqlite",
    read="PRAGMA user_version",
    write=lambda version: (f"PRAGMA user_version = {version}",),
    setting="path at another file",
)


class SqliteStorage(SqlStore):
    """The ``Storage`` protocol on a SQLite file (or ``":memory:"``)."""

    dialect = Dialect(
        archive_id="json_extract(e.data, '$.archive_id')",
        insert_order="rowid",
        now=f"{_CLOCK_FUNCTION}()",
        in_list="IN (SELECT value FROM json_each(?))",
        # One JSON array parameter, so a long list never meets SQLite's variable limit.
        list_param=lambda values: json.dumps(list(values)),
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self._path = os.fspath(path)
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._channels = LocalChannels()

    @property
    def path(self) -> str:
        return self._path

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def label(self) -> str:
        return f"the storage file {self._path!r}"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file (creating its directory), migrate it to the latest version."""
        async with self._lock:
            if self._db is not None:
                return
            with self._errors("open"):
                if self._path not in ("", _MEMORY):
                    parent = Path(self._path).parent
                    await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
                db = await aiosqlite.connect(self._path, isolation_level=None)
                try:
                    await self._prepare(db)
                except BaseException:
                    await db.close()
                    raise
            self._db = db
            _log.debug("storage open at %s (schema version %d)", self._path, LATEST_VERSION)

    async def close(self) -> None:
        """Close the connection after any call in progress; closing twice is a no-op."""
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            self._channels.clear()
            with self._errors("close"):
                await db.close()

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        mode = await _scalar(db, "PRAGMA journal_mode = WAL")
        if mode != "wal" and self._path != _MEMORY:
            _log.warning("storage file %s refused WAL mode (journal_mode=%s)", self._path, mode)
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.create_function(_CLOCK_FUNCTION, 0, self._clock)
        # BEGIN IMMEDIATE takes the write lock before the version is read.
        await migrate(lambda: _transaction(db), _VERSION, self.label)

    # -- the one place sqlite errors become StorageError --------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if action == "open":
                # One sentence the CLI prints as is: the path, the cause, the fix.
                raise StorageError(
                    f"cannot open the SQLite database at {self._path}: "
                    f"{_open_failure(self._path, exc)}; set storage.path to a file."
                ) from exc
            raise self._failure(action, exc) from exc

    @contextlib.asynccontextmanager
    async def _use(self, action: str, *, transaction: bool = False) -> AsyncIterator[_Conn]:
        async with self._lock:
            db = self._db
            if db is None:
                raise self._not_open(action)
            with self._errors(action):
                if not transaction:
                    yield _Conn(db)
                    return
                async with _transaction(db) as conn:
                    yield conn

    # -- notifications: one process owns every listener -----------------------------------

    async def notify(self, channel: str, payload: str) -> None:
        async with self._use("notify"):
            self._channels.notify(channel, payload)

    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        async with self._use("listen"):
            return self._channels.listen(channel, callback)


@contextlib.asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[_Conn]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error or cancellation.

    The rollback is queued on the connection's worker thread behind every statement
    already sent, so it also undoes a statement whose await was cancelled.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield _Conn(db)
        await db.execute("COMMIT")
    except BaseException:
        try:
            await db.rollback()
        except sqlite3.Error:
            _log.warning("storage rollback failed", exc_info=True)
        raise


class _Conn:
    """The ``SqlConn`` of the store's one connection (under the store's lock)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return [tuple(row) for row in await self._db.execute_fetchall(sql, params)]

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        # One trip to the connection's thread instead of two (execute, then closing the
        # cursor): the store's lock makes this the only statement on the connection, so
        # the change in its running total is this statement's count (the schema has no
        # triggers, whose changes the total would also count).
        before = self._db.total_changes
        await self._db.execute_fetchall(sql, params)
        return self._db.total_changes - before

    async def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        await self._db.executemany(sql, rows)


async def _scalar(db: aiosqlite.Connection, sql: str) -> Any:
    rows = list(await db.execute_fetchall(sql))
    return rows[0][0] if rows else None


def _open_failure(path: str, exc: BaseException) -> str:
    """Why ``path`` did not open, in words; only called once opening has failed."""
    target = Path(path)
    if target.is_dir():
        return "it is a directory"
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return "it is not a SQLite database"
    if isinstance(exc, OSError):
        return f"its directory {target.parent} cannot be created ({exc.strerror or exc})"
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        return "permission denied (it must be readable and writable)"
    if not os.access(target.parent, os.W_OK):
        return f"permission denied in its directory {target.parent}"
    return str(exc)
