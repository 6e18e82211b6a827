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
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

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
from runtime.storage.local_channels import LocalChannels
from runtime.storage.schema import LATEST_VERSION, pending

_log = logging.getLogger(__name__)

_MEMORY = ":memory:"


class SqliteStorage:
    """The ``Storage`` protocol on a SQLite file (or ``":memory:"``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = os.fspath(path)
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._channels = LocalChannels()

    @property
    def path(self) -> str:
        return self._path

    @property
    def is_open(self) -> bool:
        return self._db is not None

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
        await self._migrate(db)

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        # The version is read inside each write transaction, so two processes opening
        # the same file at once never apply a migration twice.
        while True:
            async with _transaction(db):
                current = int(await _scalar(db, "PRAGMA user_version"))
                if current > LATEST_VERSION:
                    raise StorageError(
                        f"The storage file {self._path!r} has schema version {current}, "
                        f"newer than version {LATEST_VERSION} that this agent-gateway knows; "
                        "upgrade agent-gateway or point [storage] path at another file."
                    )
                todo = pending(current)
                if not todo:
                    return
                migration = todo[0]
                for statement in migration.sqlite:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {migration.version}")
            _log.info(
                "storage file %s migrated to version %d (%s)",
                self._path,
                migration.version,
                migration.description,
            )

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
            raise StorageError(
                f"The storage file {self._path!r} failed to {action}: {exc}."
            ) from exc

    @contextlib.asynccontextmanager
    async def _use(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._db
            if db is None:
                raise StorageError(
                    f"The storage file {self._path!r} is not open; call open() first "
                    f"(while trying to {action})."
                )
            with self._errors(action):
                yield db

    # -- runs ----------------------------------------------------------------------------

    async def commit_run(self, commit: RunCommit) -> None:
        """Upsert the session and append everything the run produced, all or nothing."""
        session_id = commit.session.id
        async with self._use("commit a run"), _transaction(self._connection()) as db:
            await _upsert_session(db, commit.session)
            await self._append_entries(db, session_id, commit.entries)
            await db.executemany(
                "INSERT INTO usage (session_id, model, prompt_tokens, completion_tokens, at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (session_id, u.model, u.prompt_tokens, u.completion_tokens, u.at)
                    for u in commit.usage
                ],
            )
            await db.executemany(
                "INSERT INTO events (session_id, kind, data, at) VALUES (?, ?, ?, ?)",
                [(session_id, e.kind, e.data_json, e.at) for e in commit.events],
            )
            await _settle(db, commit.answered, "answered")

    async def _append_entries(
        self, db: aiosqlite.Connection, session_id: str, entries: Sequence[StoredEntry]
    ) -> None:
        seq = int(
            await _scalar(
                db, "SELECT COALESCE(MAX(seq), 0) FROM entries WHERE session_id = ?", session_id
            )
        )
        now = self._clock()
        # Entries are encoded one by one between inserts: a failure half-way relies on
        # the surrounding transaction, never on having validated everything up front.
        for entry in entries:
            seq += 1
            if isinstance(entry, CompactMarker):
                data = await self._write_archive(db, session_id, entry, now)
            else:
                data = encode_entry(entry, f"entry {seq} of session {session_id!r}")
            await db.execute(
                "INSERT INTO entries (session_id, seq, kind, data, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, seq, entry.kind, data, now),
            )

    async def _write_archive(
        self, db: aiosqlite.Connection, session_id: str, marker: CompactMarker, now: float
    ) -> str:
        """Store the marker's archived entries and summary; return the marker's entry
        JSON, which points at the archive instead of repeating the archived entries."""
        archived = encode_archive(marker, f"the archive of session {session_id!r}")
        cursor = await db.execute(
            "INSERT INTO archives (session_id, summary, entries, created_at) VALUES (?, ?, ?, ?)",
            (session_id, marker.summary, archived, now),
        )
        assert cursor.lastrowid is not None  # an INSERT into a rowid table sets it
        return encode_marker(
            marker, cursor.lastrowid, f"the compact marker of session {session_id!r}"
        )

    async def load_entries(self, session_id: str) -> list[StoredEntry]:
        async with self._use("load entries") as db:
            rows = await db.execute_fetchall(
                "SELECT e.seq, e.data, a.entries FROM entries AS e"
                " LEFT JOIN archives AS a"
                " ON e.kind = 'compact' AND a.id = json_extract(e.data, '$.archive_id')"
                " WHERE e.session_id = ? ORDER BY e.seq",
                (session_id,),
            )
        return [self._decode(session_id, seq, data, archived) for seq, data, archived in rows]

    def _decode(self, session_id: str, seq: int, data: str, archived: str | None) -> StoredEntry:
        where = f"Entry {seq} of session {session_id!r} in the storage file {self._path!r}"
        return decode_entry(data, archived, where)

    async def load_context(self, session_id: str) -> list[Entry]:
        return rebuild_context(await self.load_entries(session_id))

    async def usage_totals(self, session_id: str) -> tuple[int, int]:
        async with self._use("sum usage") as db:
            rows = await _rows(
                db,
                "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)"
                " FROM usage WHERE session_id = ?",
                session_id,
            )
        return int(rows[0][0]), int(rows[0][1])

    # -- sessions ------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        async with self._use("read a session") as db:
            rows = await _rows(
                db, f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", session_id
            )
        return session_record(rows[0]) if rows else None

    async def find_session(self, agent: str, sender: str, topic_key: str) -> SessionRecord | None:
        async with self._use("find a session") as db:
            rows = await _rows(
                db,
                f"SELECT {SESSION_COLUMNS} FROM sessions"
                " WHERE agent = ? AND sender = ? AND topic_key = ?"
                " ORDER BY updated_at DESC, rowid DESC LIMIT 1",
                agent,
                sender,
                topic_key,
            )
        return session_record(rows[0]) if rows else None

    async def list_sessions(self, agent: str, sender: str) -> list[SessionRecord]:
        async with self._use("list sessions") as db:
            rows = await db.execute_fetchall(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE agent = ? AND sender = ?"
                " ORDER BY updated_at DESC, rowid DESC",
                (agent, sender),
            )
        return [session_record(row) for row in rows]

    # -- router state, bindings -----------------------------------------------------------

    async def get_active_topic(self, agent: str, sender: str) -> str | None:
        async with self._use("read the active topic") as db:
            value = await _scalar(
                db,
                "SELECT active_topic FROM router_state WHERE agent = ? AND sender = ?",
                agent,
                sender,
            )
        return None if value is None else str(value)

    async def set_active_topic(self, agent: str, sender: str, topic_key: str | None) -> None:
        async with self._use("set the active topic") as db:
            if topic_key is None:
                await db.execute(
                    "DELETE FROM router_state WHERE agent = ? AND sender = ?", (agent, sender)
                )
            else:
                await db.execute(
                    "INSERT INTO router_state (agent, sender, active_topic) VALUES (?, ?, ?)"
                    " ON CONFLICT (agent, sender) DO UPDATE"
                    " SET active_topic = excluded.active_topic",
                    (agent, sender, topic_key),
                )

    async def bind_thread(self, platform: str, thread_id: str, session_id: str) -> None:
        async with self._use("bind a thread") as db:
            await db.execute(
                "INSERT INTO bindings (platform, thread_id, session_id) VALUES (?, ?, ?)"
                " ON CONFLICT (platform, thread_id) DO UPDATE SET session_id = excluded.session_id",
                (platform, thread_id, session_id),
            )

    async def get_binding(self, platform: str, thread_id: str) -> str | None:
        async with self._use("read a thread binding") as db:
            value = await _scalar(
                db,
                "SELECT session_id FROM bindings WHERE platform = ? AND thread_id = ?",
                platform,
                thread_id,
            )
        return None if value is None else str(value)

    # -- the durable inbox -----------------------------------------------------------------

    async def accept_inbound(self, records: Sequence[InboxRecord]) -> list[bool]:
        accepted: list[bool] = []
        async with self._use("accept inbound messages"), _transaction(self._connection()) as db:
            for record in records:
                cursor = await db.execute(
                    "INSERT INTO inbox (id, platform, payload, state, accepted_at)"
                    " VALUES (?, ?, ?, 'accepted', ?) ON CONFLICT (id) DO NOTHING",
                    (record.id, record.platform, record.payload, record.accepted_at),
                )
                accepted.append(cursor.rowcount == 1)
        return accepted

    async def settle_inbound(self, ids: Sequence[str], state: InboxState) -> None:
        check_settled_state(state)
        async with self._use("settle inbound messages"), _transaction(self._connection()) as db:
            await _settle(db, ids, state)

    async def unanswered_inbound(self) -> list[InboxRecord]:
        async with self._use("read the unanswered inbox") as db:
            rows = await db.execute_fetchall(
                f"SELECT {INBOX_COLUMNS} FROM inbox"
                " WHERE state = 'accepted' ORDER BY accepted_at, rowid"
            )
        return [inbox_record(row) for row in rows]

    async def get_inbound(self, ids: Sequence[str]) -> list[InboxRecord]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        async with self._use("read inbox records") as db:
            rows = await db.execute_fetchall(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id IN ({marks})", wanted
            )
        return in_order(wanted, [inbox_record(row) for row in rows])

    async def prune_inbound(self, before: float) -> int:
        async with self._use("prune the inbox") as db:
            cursor = await db.execute(
                "DELETE FROM inbox WHERE state <> 'accepted' AND accepted_at < ?", (before,)
            )
        return cursor.rowcount

    # -- replicas: one process owns everything, but the semantics are PostgreSQL's -------

    async def try_acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        async with self._use("take a conversation lease") as db:
            cursor = await db.execute(
                "INSERT INTO conversation_leases (key, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at"
                " WHERE conversation_leases.owner = excluded.owner"
                " OR conversation_leases.expires_at < ?",
                (key, owner, now + ttl, now),
            )
        return cursor.rowcount == 1

    async def renew_leases(self, owner: str, ttl: float) -> list[str]:
        now = self._clock()
        async with self._use("renew conversation leases") as db:
            rows = await db.execute_fetchall(
                "UPDATE conversation_leases SET expires_at = ?"
                " WHERE owner = ? AND expires_at >= ? RETURNING key",
                (now + ttl, owner, now),
            )
        return sorted(str(row[0]) for row in rows)

    async def release_lease(self, key: str, owner: str) -> None:
        async with self._use("release a conversation lease") as db:
            await db.execute(
                "DELETE FROM conversation_leases WHERE key = ? AND owner = ?", (key, owner)
            )

    async def notify(self, channel: str, payload: str) -> None:
        async with self._use("notify"):
            self._channels.notify(channel, payload)

    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        async with self._use("listen"):
            return self._channels.listen(channel, callback)

    def _connection(self) -> aiosqlite.Connection:
        # Only called under _use, which has checked the store is open.
        assert self._db is not None
        return self._db


@contextlib.asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error or cancellation.

    The rollback is queued on the connection's worker thread behind every statement
    already sent, so it also undoes a statement whose await was cancelled.
    """
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        await db.execute("COMMIT")
    except BaseException:
        try:
            await db.rollback()
        except sqlite3.Error:
            _log.warning("storage rollback failed", exc_info=True)
        raise


async def _upsert_session(db: aiosqlite.Connection, session: SessionRecord) -> None:
    # A commit without a title never erases one set meanwhile (by /title or the
    # background title task).
    await db.execute(
        f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET"
        " title = COALESCE(excluded.title, sessions.title),"
        " updated_at = excluded.updated_at",
        session_values(session),
    )


async def _settle(db: aiosqlite.Connection, ids: Sequence[str], state: InboxState) -> None:
    await db.executemany("UPDATE inbox SET state = ? WHERE id = ?", [(state, i) for i in ids])


async def _rows(db: aiosqlite.Connection, sql: str, *params: object) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _scalar(db: aiosqlite.Connection, sql: str, *params: object) -> Any:
    rows = await _rows(db, sql, *params)
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
