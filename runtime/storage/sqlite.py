"""SQLite storage: one connection on one WAL file, its statements run on the event loop.

A statement here takes tens of microseconds (a WAL append, no fsync with ``synchronous =
NORMAL``): less than handing it to a worker thread and back, which cost aiosqlite ~0.15 ms
and a GIL hand-off per statement, about a quarter of a message's time through the
gateway. So statements run inline, and only what could stall the loop leaves it:
- a lock another process holds (``BEGIN IMMEDIATE`` while a CLI writes) is never waited
  for inside SQLite (``busy_timeout = 0``); the store retries with ``asyncio.sleep``
  until ``busy_timeout`` runs out;
- WAL checkpoints (the fsyncs) run on a second connection in a thread
  (``_Checkpoints``); the connection's own auto-checkpoint is off;
- reads that grow with the data (a whole conversation log) run in a thread
  (``_fetch_log``), the connection still held by the store's lock.
An asyncio lock makes each public call a unit: a run's commit is never interleaved with
another call's statements, so a reader never sees half a run and a single-statement
write never lands inside (and dies with) another call's transaction. Writes of a run go
through ``commit_run`` in one ``BEGIN IMMEDIATE`` transaction; a crash loses at most the
transaction in flight.
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
from typing import TypeVar

from runtime.backoff import Backoff
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
        self._busy = _Busy(busy_timeout)
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._channels = LocalChannels()
        self._on_disk = self._path not in ("", _MEMORY)  # "" is SQLite's private temp file
        self._checkpoints = _Checkpoints(self._path) if self._on_disk else None

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
                if self._on_disk:
                    parent = Path(self._path).parent
                    await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
                db = await asyncio.to_thread(self._connect)
                try:
                    # BEGIN IMMEDIATE takes the write lock before the version is read.
                    await migrate(lambda: _transaction(_Conn(db, self._busy)), _VERSION, self.label)
                except BaseException:
                    await asyncio.to_thread(db.close)
                    raise
            self._db = db
            _log.debug("storage open at %s (schema version %d)", self._path, LATEST_VERSION)

    def _connect(self) -> sqlite3.Connection:
        """The connection, set up (in a thread: switching to WAL may wait for a lock)."""
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self._busy.timeout * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal" and self._path != _MEMORY:
                _log.warning("storage file %s refused WAL mode (journal_mode=%s)", self._path, mode)
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            if self._checkpoints is not None:
                db.execute("PRAGMA wal_autocheckpoint = 0")  # _Checkpoints does it off the loop
            db.create_function(_CLOCK_FUNCTION, 0, self._clock)
            # From here on a statement never waits inside SQLite: _Busy waits on the loop.
            db.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            db.close()
            raise
        return db

    async def close(self) -> None:
        """Close the connection after any call in progress; closing twice is a no-op."""
        async with self._lock:
            db, self._db = self._db, None
            if db is None:
                return
            self._channels.clear()
            with self._errors("close"):
                if self._checkpoints is not None:
                    await self._checkpoints.close()
                # The last connection to close checkpoints the WAL: in a thread.
                await asyncio.to_thread(db.close)

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
                conn = _Conn(db, self._busy)
                if not transaction:
                    yield conn
                else:
                    async with _transaction(conn) as conn:
                        yield conn
            if self._checkpoints is not None and conn.wrote:
                self._checkpoints.wrote(conn.wrote)

    async def _fetch_log(self, action: str, sql: str, *params: object) -> list[Row]:
        async with self._use(action) as conn:
            return await conn.fetch_in_thread(sql, params)

    # -- notifications: one process owns every listener -----------------------------------

    async def notify(self, channel: str, payload: str) -> None:
        async with self._use("notify"):
            self._channels.notify(channel, payload)

    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        async with self._use("listen"):
            return self._channels.listen(channel, callback)


_T = TypeVar("_T")


class _Busy:
    """Waiting out another process's lock on the loop, up to ``timeout`` seconds."""

    BACKOFF = Backoff(base=0.001, cap=0.05)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def call(self, statement: Callable[[], _T]) -> _T:
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                return statement()
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
                now = time.monotonic()
                deadline = now + self.timeout if deadline is None else deadline
                if now >= deadline:
                    raise
                attempt += 1
                await asyncio.sleep(min(self.BACKOFF.delay(attempt), deadline - now))


@contextlib.asynccontextmanager
async def _transaction(conn: _Conn) -> AsyncIterator[_Conn]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error or cancellation (statements
    run inline, so a cancellation lands between them, never inside one)."""
    await conn.run("BEGIN IMMEDIATE")
    try:
        yield conn
        await conn.run("COMMIT")
    except BaseException:
        try:
            conn.rollback()
        except sqlite3.Error:
            _log.warning("storage rollback failed", exc_info=True)
        raise


class _Conn:
    """The ``SqlConn`` of the store's one connection (under the store's lock)."""

    def __init__(self, db: sqlite3.Connection, busy: _Busy) -> None:
        self._db = db
        self._busy = busy
        self.wrote = 0  # changed rows, for the checkpointer

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return await self._busy.call(lambda: self._rows(sql, params))

    async def fetch_in_thread(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        # Shielded: the statement keeps the connection until it ends, even when the
        # caller is cancelled, so the store's lock is never released under it.
        work = asyncio.ensure_future(asyncio.to_thread(self._rows, sql, params))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            await asyncio.wait({work})
            raise

    def _rows(self, sql: str, params: Sequence[object]) -> list[Row]:
        return [tuple(row) for row in self._db.execute(sql, params).fetchall()]

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        def statement() -> int:
            cursor = self._db.execute(sql, params)
            try:
                return max(cursor.rowcount, 0)
            finally:
                cursor.close()

        changed = await self._busy.call(statement)
        self.wrote += changed
        return changed

    async def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        await self._busy.call(lambda: self._db.executemany(sql, rows).close())
        self.wrote += len(rows)

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


class _Checkpoints:
    """WAL checkpoints on a second connection in a thread, every ``EVERY`` changed rows:
    the fsyncs of WAL mode never run on the event loop. A failed one is logged and the
    next one catches up (a PASSIVE checkpoint copies what it can without waiting)."""

    EVERY = 500

    def __init__(self, path: str) -> None:
        self._path = path
        self._pending = 0
        self._task: asyncio.Task[None] | None = None
        self._db: sqlite3.Connection | None = None

    def wrote(self, rows: int) -> None:
        self._pending += rows
        if self._pending < self.EVERY or (self._task is not None and not self._task.done()):
            return
        self._pending = 0
        self._task = asyncio.create_task(self._checkpoint(), name="sqlite-checkpoint")

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self._checkpoint_now)
        except (sqlite3.Error, OSError) as exc:
            _log.warning("checkpointing the storage file %s failed: %s", self._path, exc)

    def _checkpoint_now(self) -> None:
        if self._db is None:
            self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(db.close)


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
