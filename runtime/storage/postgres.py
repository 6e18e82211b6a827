"""PostgreSQL storage: the ``Storage`` protocol on a psycopg 3 async connection pool.

psycopg 3 rather than asyncpg: it ships its own type hints (the tree is ``mypy
--strict``), its async API mirrors the DB-API the SQLite backend uses, and LISTEN/NOTIFY
is an async iterator on a connection. The workload (a few statements per run boundary)
never makes driver speed the bottleneck.

Each public call borrows one pooled connection for its duration; a call that writes
more than one statement runs them in one transaction, so PostgreSQL's row locks (not an
in-process lock as in SQLite) keep concurrent commits of one session, from this process
or another replica, from interleaving. Opening connects once directly, so a refused
connection reports the server's own reason, migrates under an advisory lock, then opens
the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from runtime.storage.base import NotifyCallback, Unlisten
from runtime.storage.dialect import Dialect, Row
from runtime.storage.schema import LATEST_VERSION, VersionKeeping, migrate
from runtime.storage.sql import SqlStore
from runtime.tasks import TaskSet

_log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]

# Seconds since the epoch on the database server's clock (one clock for all replicas).
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

# Any constant shared by every replica: the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x61677477  # "agtw"

_VERSION = VersionKeeping(
    dialect="postgres",
    read="SELECT MAX(version) FROM schema_version",
    write=lambda version: (
        "DELETE FROM schema_version",
        f"INSERT INTO schema_version (version) VALUES ({version})",
    ),
    setting="url at another database",
)


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


class PostgresStorage(SqlStore):
    """The ``Storage`` protocol on a PostgreSQL database."""

    dialect = Dialect(
        archive_id="(e.data::json ->> 'archive_id')::bigint",
        insert_order="seq",
        now=_NOW,
        in_list="= ANY(?)",
        list_param=list,
    )

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self._url = url
        self._where = describe_url(url)
        self._min = min_connections
        self._max = max_connections
        self._timeout = connect_timeout
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._listeners = TaskSet()

    @property
    def url(self) -> str:
        return self._url

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def label(self) -> str:
        return f"the PostgreSQL database {self._where}"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate to the latest version, open the pool; a second open is a no-op."""
        if self._pool is not None:
            return
        with self._errors("open"):
            conn = await self.connect()
            try:
                await migrate(lambda: self._migration(conn), _VERSION, self.label)
            finally:
                await conn.close()
            pool: AsyncConnectionPool[AsyncConn] = AsyncConnectionPool(
                self._url,
                min_size=self._min,
                max_size=self._max,
                timeout=self._timeout,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(self._timeout))},
                open=False,
            )
            await pool.open(wait=True, timeout=self._timeout)
        self._pool = pool
        _log.debug("storage open at %s (schema version %d)", self._where, LATEST_VERSION)

    async def close(self) -> None:
        """Close the pool, waiting for calls in progress; closing twice is a no-op."""
        pool, self._pool = self._pool, None
        await self._listeners.cancel()
        if pool is not None:
            with self._errors("close"):
                await pool.close()

    async def connect(self) -> AsyncConn:
        """A connection of its own, outside the pool (migrations, LISTEN)."""
        conn: AsyncConn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=max(1, int(self._timeout))
        )
        return conn

    @contextlib.asynccontextmanager
    async def _migration(self, conn: AsyncConn) -> AsyncIterator[_Conn]:
        async with conn.transaction():
            # Replicas starting together queue here, each then reading the version
            # anew; even CREATE TABLE IF NOT EXISTS races without the lock.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            yield _Conn(conn)

    # -- the one place psycopg errors become StorageError ---------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, OSError) as exc:
            raise self._failure(action, exc) from exc

    @contextlib.asynccontextmanager
    async def _use(self, action: str, *, transaction: bool = False) -> AsyncIterator[_Conn]:
        pool = self._pool
        if pool is None:
            raise self._not_open(action)
        with self._errors(action):
            async with pool.connection() as conn:
                if not transaction:
                    yield _Conn(conn)
                    return
                async with conn.transaction():
                    yield _Conn(conn)

    # -- notifications: LISTEN/NOTIFY reach every replica -------------------------------

    async def notify(self, channel: str, payload: str) -> None:
        await self._fetch("notify", "SELECT pg_notify(?, ?)", channel, payload)

    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        """LISTEN on a connection of its own, outside the pool, read by one task."""
        if self._pool is None:
            raise self._not_open(f"listen on {channel!r}")
        with self._errors(f"listen on {channel!r}"):
            conn = await self.connect()
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except BaseException:
                await conn.close()
                raise
        task = self._listeners.spawn(
            self._deliver(conn, channel, callback), name=f"listen-{channel}"
        )

        async def unlisten() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return unlisten

    async def _deliver(self, conn: AsyncConn, channel: str, callback: NotifyCallback) -> None:
        try:
            async for note in conn.notifies():
                try:
                    callback(note.payload)
                except Exception:
                    _log.exception("listener of storage channel %r failed", channel)
        except psycopg.Error:
            # The replica goes on without wake-ups; lease expiry still moves work.
            _log.warning("storage channel %r lost its connection", channel, exc_info=True)
        finally:
            await conn.close()


class _Conn:
    """The ``SqlConn`` of one pooled connection; ``?`` placeholders become ``%s``."""

    def __init__(self, conn: AsyncConn) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        cursor = await self._conn.execute(_placeholders(sql), params)
        return await cursor.fetchall()

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        cursor = await self._conn.execute(_placeholders(sql), params)
        return cursor.rowcount

    async def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(_placeholders(sql), rows)


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    # The queries in runtime.storage.sql hold no '?' nor '%' but their placeholders.
    return sql.replace("?", "%s")
