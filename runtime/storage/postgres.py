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
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from runtime.errors import StorageError
from runtime.history import CompactMarker, Entry, StoredEntry, rebuild_context
from runtime.storage.base import (
    InboxRecord,
    InboxState,
    NotifyCallback,
    RunCommit,
    SessionRecord,
    Unlisten,
    check_settled_state,
)
from runtime.storage.codec import (
    INBOX_COLUMNS,
    SESSION_COLUMNS,
    decode_entry,
    encode_archive,
    encode_entry,
    encode_marker,
    in_order,
    inbox_record,
    session_record,
    session_values,
)
from runtime.storage.schema import LATEST_VERSION, pending

_log = logging.getLogger(__name__)

AsyncConn = psycopg.AsyncConnection[tuple[Any, ...]]

# Seconds since the epoch on the database server's clock (one clock for all replicas).
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

# Any constant shared by every replica: the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x61677477  # "agtw"


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


class PostgresStorage:
    """The ``Storage`` protocol on a PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._where = describe_url(url)
        self._min = min_connections
        self._max = max_connections
        self._timeout = connect_timeout
        self._clock = clock
        self._pool: AsyncConnectionPool[AsyncConn] | None = None
        self._listeners: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return self._url

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate to the latest version, open the pool; a second open is a no-op."""
        if self._pool is not None:
            return
        with self._errors("open"):
            conn = await self.connect()
            try:
                await self._migrate(conn)
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
        listeners = list(self._listeners)
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        if pool is not None:
            with self._errors("close"):
                await pool.close()

    async def connect(self) -> AsyncConn:
        """A connection of its own, outside the pool (migrations, LISTEN)."""
        conn: AsyncConn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=max(1, int(self._timeout))
        )
        return conn

    async def _migrate(self, conn: AsyncConn) -> None:
        while True:
            async with conn.transaction():
                # Replicas starting together queue here, each then reading the version
                # anew; even CREATE TABLE IF NOT EXISTS races without the lock.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                row = await (
                    await conn.execute("SELECT MAX(version) FROM schema_version")
                ).fetchone()
                current = int(row[0]) if row and row[0] is not None else 0
                if current > LATEST_VERSION:
                    raise StorageError(
                        f"The PostgreSQL database {self._where} has schema version {current}, "
                        f"newer than version {LATEST_VERSION} that this agent-gateway knows; "
                        "upgrade agent-gateway or point [storage] url at another database."
                    )
                todo = pending(current)
                if not todo:
                    return
                migration = todo[0]
                for statement in migration.postgres:
                    await conn.execute(statement)
                await conn.execute("DELETE FROM schema_version")
                await conn.execute(
                    "INSERT INTO schema_version (version) VALUES (%s)", (migration.version,)
                )
            _log.info(
                "storage %s migrated to version %d (%s)",
                self._where,
                migration.version,
                migration.description,
            )

    # -- the one place psycopg errors become StorageError ---------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, OSError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(
                f"The PostgreSQL database {self._where} failed to {action}: {detail}."
            ) from exc

    @contextlib.asynccontextmanager
    async def _use(self, action: str, *, transaction: bool = False) -> AsyncIterator[AsyncConn]:
        pool = self._pool
        if pool is None:
            raise StorageError(
                f"The PostgreSQL database {self._where} is not open; call open() first "
                f"(while trying to {action})."
            )
        with self._errors(action):
            async with pool.connection() as conn:
                if not transaction:
                    yield conn
                    return
                async with conn.transaction():
                    yield conn

    async def _rows(self, action: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
        async with self._use(action) as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    # -- runs ----------------------------------------------------------------------------

    async def commit_run(self, commit: RunCommit) -> None:
        """Upsert the session and append everything the run produced, all or nothing."""
        session_id = commit.session.id
        async with self._use("commit a run", transaction=True) as conn:
            # The upsert locks the session's row until commit: concurrent commits of one
            # session (from any replica) take their entry numbers one after the other.
            await conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET"
                " title = COALESCE(excluded.title, sessions.title),"
                " updated_at = excluded.updated_at",
                session_values(commit.session),
            )
            await self._append_entries(conn, session_id, commit.entries)
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO usage (session_id, model, prompt_tokens, completion_tokens, at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [
                        (session_id, u.model, u.prompt_tokens, u.completion_tokens, u.at)
                        for u in commit.usage
                    ],
                )
                await cursor.executemany(
                    "INSERT INTO events (session_id, kind, data, at) VALUES (%s, %s, %s, %s)",
                    [(session_id, e.kind, e.data_json, e.at) for e in commit.events],
                )
            await _settle(conn, commit.answered, "answered")

    async def _append_entries(
        self, conn: AsyncConn, session_id: str, entries: Sequence[StoredEntry]
    ) -> None:
        cursor = await conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM entries WHERE session_id = %s", (session_id,)
        )
        row = await cursor.fetchone()
        seq = int(row[0]) if row else 0
        now = self._clock()
        for entry in entries:
            seq += 1
            what = f"entry {seq} of session {session_id!r}"
            if isinstance(entry, CompactMarker):
                archive = await conn.execute(
                    "INSERT INTO archives (session_id, summary, entries, created_at)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (
                        session_id,
                        entry.summary,
                        encode_archive(entry, f"the archive of {what}"),
                        now,
                    ),
                )
                archive_row = await archive.fetchone()
                assert archive_row is not None  # RETURNING always yields the row
                data = encode_marker(entry, int(archive_row[0]), what)
            else:
                data = encode_entry(entry, what)
            await conn.execute(
                "INSERT INTO entries (session_id, seq, kind, data, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (session_id, seq, entry.kind, data, now),
            )

    async def load_entries(self, session_id: str) -> list[StoredEntry]:
        rows = await self._rows(
            "load entries",
            "SELECT e.seq, e.data, a.entries FROM entries AS e"
            " LEFT JOIN archives AS a"
            " ON e.kind = 'compact' AND a.id = (e.data::json ->> 'archive_id')::bigint"
            " WHERE e.session_id = %s ORDER BY e.seq",
            session_id,
        )
        return [
            decode_entry(data, archived, f"Entry {seq} of session {session_id!r} in {self._where}")
            for seq, data, archived in rows
        ]

    async def load_context(self, session_id: str) -> list[Entry]:
        return rebuild_context(await self.load_entries(session_id))

    async def usage_totals(self, session_id: str) -> tuple[int, int]:
        rows = await self._rows(
            "sum usage",
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)"
            " FROM usage WHERE session_id = %s",
            session_id,
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- sessions ------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        rows = await self._rows(
            "read a session", f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = %s", session_id
        )
        return session_record(rows[0]) if rows else None

    async def find_session(self, agent: str, sender: str, topic_key: str) -> SessionRecord | None:
        rows = await self._rows(
            "find a session",
            f"SELECT {SESSION_COLUMNS} FROM sessions"
            " WHERE agent = %s AND sender = %s AND topic_key = %s"
            " ORDER BY updated_at DESC, seq DESC LIMIT 1",
            agent,
            sender,
            topic_key,
        )
        return session_record(rows[0]) if rows else None

    async def list_sessions(self, agent: str, sender: str) -> list[SessionRecord]:
        rows = await self._rows(
            "list sessions",
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE agent = %s AND sender = %s"
            " ORDER BY updated_at DESC, seq DESC",
            agent,
            sender,
        )
        return [session_record(row) for row in rows]

    # -- router state, bindings -----------------------------------------------------------

    async def get_active_topic(self, agent: str, sender: str) -> str | None:
        rows = await self._rows(
            "read the active topic",
            "SELECT active_topic FROM router_state WHERE agent = %s AND sender = %s",
            agent,
            sender,
        )
        return str(rows[0][0]) if rows else None

    async def set_active_topic(self, agent: str, sender: str, topic_key: str | None) -> None:
        async with self._use("set the active topic") as conn:
            if topic_key is None:
                await conn.execute(
                    "DELETE FROM router_state WHERE agent = %s AND sender = %s", (agent, sender)
                )
            else:
                await conn.execute(
                    "INSERT INTO router_state (agent, sender, active_topic) VALUES (%s, %s, %s)"
                    " ON CONFLICT (agent, sender) DO UPDATE"
                    " SET active_topic = excluded.active_topic",
                    (agent, sender, topic_key),
                )

    async def bind_thread(self, platform: str, thread_id: str, session_id: str) -> None:
        async with self._use("bind a thread") as conn:
            await conn.execute(
                "INSERT INTO bindings (platform, thread_id, session_id) VALUES (%s, %s, %s)"
                " ON CONFLICT (platform, thread_id) DO UPDATE SET session_id = excluded.session_id",
                (platform, thread_id, session_id),
            )

    async def get_binding(self, platform: str, thread_id: str) -> str | None:
        rows = await self._rows(
            "read a thread binding",
            "SELECT session_id FROM bindings WHERE platform = %s AND thread_id = %s",
            platform,
            thread_id,
        )
        return str(rows[0][0]) if rows else None

    # -- the durable inbox -----------------------------------------------------------------

    async def accept_inbound(self, records: Sequence[InboxRecord]) -> list[bool]:
        accepted: list[bool] = []
        async with self._use("accept inbound messages", transaction=True) as conn:
            for record in records:
                cursor = await conn.execute(
                    "INSERT INTO inbox (id, platform, payload, state, accepted_at)"
                    " VALUES (%s, %s, %s, 'accepted', %s) ON CONFLICT (id) DO NOTHING",
                    (record.id, record.platform, record.payload, record.accepted_at),
                )
                accepted.append(cursor.rowcount == 1)
        return accepted

    async def settle_inbound(self, ids: Sequence[str], state: InboxState) -> None:
        check_settled_state(state)
        async with self._use("settle inbound messages") as conn:
            await _settle(conn, ids, state)

    async def unanswered_inbound(self) -> list[InboxRecord]:
        rows = await self._rows(
            "read the unanswered inbox",
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE state = 'accepted' ORDER BY accepted_at, seq",
        )
        return [inbox_record(row) for row in rows]

    async def get_inbound(self, ids: Sequence[str]) -> list[InboxRecord]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        rows = await self._rows(
            "read inbox records",
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = ANY(%s)",
            wanted,
        )
        return in_order(wanted, [inbox_record(row) for row in rows])

    async def prune_inbound(self, before: float) -> int:
        async with self._use("prune the inbox") as conn:
            cursor = await conn.execute(
                "DELETE FROM inbox WHERE state <> 'accepted' AND accepted_at < %s", (before,)
            )
            return cursor.rowcount

    # -- replicas: leases on the server's clock, LISTEN/NOTIFY --------------------------
    # Lease times come from the database server's clock, so replicas whose clocks
    # disagree still agree on when a lease ends.

    async def try_acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        rows = await self._rows(
            "take a conversation lease",
            f"INSERT INTO conversation_leases (key, owner, expires_at) VALUES (%s, %s, {_NOW} + %s)"
            " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
            " expires_at = excluded.expires_at"
            " WHERE conversation_leases.owner = excluded.owner"
            f" OR conversation_leases.expires_at < {_NOW}"
            " RETURNING key",
            key,
            owner,
            ttl,
        )
        return bool(rows)

    async def renew_leases(self, owner: str, ttl: float) -> list[str]:
        rows = await self._rows(
            "renew conversation leases",
            f"UPDATE conversation_leases SET expires_at = {_NOW} + %s"
            f" WHERE owner = %s AND expires_at >= {_NOW} RETURNING key",
            ttl,
            owner,
        )
        return sorted(str(row[0]) for row in rows)

    async def release_lease(self, key: str, owner: str) -> None:
        async with self._use("release a conversation lease") as conn:
            await conn.execute(
                "DELETE FROM conversation_leases WHERE key = %s AND owner = %s", (key, owner)
            )

    async def notify(self, channel: str, payload: str) -> None:
        async with self._use("notify") as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        """LISTEN on a connection of its own, outside the pool, read by one task."""
        if self._pool is None:
            raise StorageError(f"The PostgreSQL database {self._where} is not open (listen).")
        with self._errors(f"listen on {channel!r}"):
            conn = await self.connect()
            try:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except BaseException:
                await conn.close()
                raise
        task = asyncio.create_task(self._deliver(conn, channel, callback), name=f"listen-{channel}")
        self._listeners.add(task)
        task.add_done_callback(self._listeners.discard)

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


async def _settle(conn: AsyncConn, ids: Sequence[str], state: InboxState) -> None:
    # One statement: settling is atomic without an explicit transaction.
    if ids:
        await conn.execute("UPDATE inbox SET state = %s WHERE id = ANY(%s)", (state, list(ids)))
