"""The ``Storage`` protocol written once in SQL, for every SQL backend.

Each query is written here once, with ``?`` placeholders; a backend hands ``SqlStore``
a ``SqlConn`` that runs it in its own driver's style (psycopg translates ``?`` to
``%s``), and a ``Dialect`` with the few expressions SQLite and PostgreSQL spell
differently (both in ``runtime.storage.dialect``). What really differs stays in the
backends: connections and transactions, turning driver errors into ``StorageError``,
how migrations are locked and versioned (``runtime.storage.schema`` applies them), and
notifications.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

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
from runtime.storage.dialect import Dialect, Row, SqlConn, capital
from runtime.storage.group_settle import GroupSettle


class SqlStore(ABC):
    """Every query of the ``Storage`` protocol; subclasses supply the connection."""

    dialect: Dialect

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._settles = GroupSettle(self._write_settle)

    @abstractmethod
    def _use(
        self, action: str, *, transaction: bool = False
    ) -> AbstractAsyncContextManager[SqlConn]:
        """A connection for one call (in one transaction if asked), its driver errors
        raised as ``StorageError`` naming ``action``."""

    @property
    @abstractmethod
    def label(self) -> str:
        """The database as messages name it, in lower case ("the storage file ...")."""

    @abstractmethod
    async def notify(self, channel: str, payload: str) -> None: ...

    @abstractmethod
    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten: ...

    # -- what both backends say and do the same way -------------------------------------

    def _not_open(self, action: str) -> StorageError:
        return StorageError(
            f"{capital(self.label)} is not open; call open() first (while trying to {action})."
        )

    def _failure(self, action: str, exc: BaseException) -> StorageError:
        """The driver's error ``exc`` (its first line) as the one sentence users see."""
        text = str(exc).strip()
        detail = text.splitlines()[0] if text else type(exc).__name__
        return StorageError(f"{capital(self.label)} failed to {action}: {detail}.")

    async def _fetch(self, action: str, sql: str, *params: object) -> list[Row]:
        async with self._use(action) as conn:
            return await conn.fetch(sql, params)

    async def _fetch_log(self, action: str, sql: str, *params: object) -> list[Row]:
        """A read whose size grows with the data (a whole conversation log); a backend
        that runs statements on the event loop runs this one elsewhere."""
        return await self._fetch(action, sql, *params)

    async def _scalar(self, action: str, sql: str, *params: object) -> Any:
        rows = await self._fetch(action, sql, *params)
        return rows[0][0] if rows else None

    async def _run(self, action: str, sql: str, *params: object) -> int:
        async with self._use(action) as conn:
            return await conn.run(sql, params)

    # -- runs ----------------------------------------------------------------------------

    async def commit_run(self, commit: RunCommit) -> None:
        """Upsert the session and append everything the run produced, all or nothing."""
        session_id = commit.session.id
        async with self._use("commit a run", transaction=True) as conn:
            # A commit without a title never erases one set meanwhile (by /title or the
            # background title task). On PostgreSQL the upsert also locks the session's
            # row until commit: concurrent commits of one session (from any replica)
            # take their entry numbers one after the other.
            await conn.run(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET"
                " title = COALESCE(excluded.title, sessions.title),"
                " updated_at = excluded.updated_at",
                session_values(commit.session),
            )
            await self._append_entries(conn, session_id, commit.entries)
            await conn.run_many(
                "INSERT INTO usage (session_id, model, prompt_tokens, completion_tokens, at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (session_id, u.model, u.prompt_tokens, u.completion_tokens, u.at)
                    for u in commit.usage
                ],
            )
            await conn.run_many(
                "INSERT INTO events (session_id, kind, data, at) VALUES (?, ?, ?, ?)",
                [(session_id, e.kind, e.data_json, e.at) for e in commit.events],
            )
            await self._settle(conn, commit.answered, "answered")

    async def _append_entries(
        self, conn: SqlConn, session_id: str, entries: Sequence[StoredEntry]
    ) -> None:
        rows = await conn.fetch(
            "SELECT COALESCE(MAX(seq), 0) FROM entries WHERE session_id = ?", (session_id,)
        )
        seq = int(rows[0][0])
        now = self._clock()
        # Entries are encoded one by one between inserts: a failure half-way relies on
        # the surrounding transaction, never on having validated everything up front.
        for entry in entries:
            seq += 1
            what = f"entry {seq} of session {session_id!r}"
            if isinstance(entry, CompactMarker):
                data = await self._write_archive(conn, session_id, entry, now, what)
            else:
                data = encode_entry(entry, what)
            await conn.run(
                "INSERT INTO entries (session_id, seq, kind, data, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, seq, entry.kind, data, now),
            )

    async def _write_archive(
        self, conn: SqlConn, session_id: str, marker: CompactMarker, now: float, what: str
    ) -> str:
        """Store the marker's archived entries and summary; return the marker's entry
        JSON, which points at the archive instead of repeating the archived entries."""
        archived = encode_archive(marker, f"the archive of {what}")
        rows = await conn.fetch(
            "INSERT INTO archives (session_id, summary, entries, created_at)"
            " VALUES (?, ?, ?, ?) RETURNING id",
            (session_id, marker.summary, archived, now),
        )
        return encode_marker(marker, int(rows[0][0]), what)

    async def load_entries(self, session_id: str) -> list[StoredEntry]:
        """The whole stored log of a session, compaction markers included."""
        rows = await self._fetch_log(
            "load entries",
            "SELECT e.seq, e.data, a.entries FROM entries AS e"
            " LEFT JOIN archives AS a"
            f" ON e.kind = 'compact' AND a.id = {self.dialect.archive_id}"
            " WHERE e.session_id = ? ORDER BY e.seq",
            session_id,
        )
        return [
            decode_entry(data, archived, f"Entry {seq} of session {session_id!r} in {self.label}")
            for seq, data, archived in rows
        ]

    async def load_context(self, session_id: str) -> list[Entry]:
        return rebuild_context(await self.load_entries(session_id))

    async def usage_totals(self, session_id: str) -> tuple[int, int]:
        rows = await self._fetch(
            "sum usage",
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)"
            " FROM usage WHERE session_id = ?",
            session_id,
        )
        return int(rows[0][0]), int(rows[0][1])

    # -- sessions ------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        rows = await self._fetch(
            "read a session", f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", session_id
        )
        return session_record(rows[0]) if rows else None

    async def find_session(self, agent: str, sender: str, topic_key: str) -> SessionRecord | None:
        rows = await self._fetch(
            "find a session",
            f"SELECT {SESSION_COLUMNS} FROM sessions"
            " WHERE agent = ? AND sender = ? AND topic_key = ?"
            f" ORDER BY updated_at DESC, {self.dialect.insert_order} DESC LIMIT 1",
            agent,
            sender,
            topic_key,
        )
        return session_record(rows[0]) if rows else None

    async def list_sessions(self, agent: str, sender: str) -> list[SessionRecord]:
        rows = await self._fetch(
            "list sessions",
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE agent = ? AND sender = ?"
            f" ORDER BY updated_at DESC, {self.dialect.insert_order} DESC",
            agent,
            sender,
        )
        return [session_record(row) for row in rows]

    # -- router state, bindings -----------------------------------------------------------

    async def get_active_topic(self, agent: str, sender: str) -> str | None:
        value = await self._scalar(
            "read the active topic",
            "SELECT active_topic FROM router_state WHERE agent = ? AND sender = ?",
            agent,
            sender,
        )
        return None if value is None else str(value)

    async def active_topics(self) -> dict[tuple[str, str], str]:
        rows = await self._fetch(
            "read the active topics", "SELECT agent, sender, active_topic FROM router_state"
        )
        return {(str(row[0]), str(row[1])): str(row[2]) for row in rows}

    async def set_active_topic(self, agent: str, sender: str, topic_key: str | None) -> None:
        if topic_key is None:
            await self._run(
                "set the active topic",
                "DELETE FROM router_state WHERE agent = ? AND sender = ?",
                agent,
                sender,
            )
            return
        await self._run(
            "set the active topic",
            "INSERT INTO router_state (agent, sender, active_topic) VALUES (?, ?, ?)"
            " ON CONFLICT (agent, sender) DO UPDATE SET active_topic = excluded.active_topic",
            agent,
            sender,
            topic_key,
        )

    async def bind_thread(self, platform: str, thread_id: str, session_id: str) -> None:
        await self._run(
            "bind a thread",
            "INSERT INTO bindings (platform, thread_id, session_id) VALUES (?, ?, ?)"
            " ON CONFLICT (platform, thread_id) DO UPDATE SET session_id = excluded.session_id",
            platform,
            thread_id,
            session_id,
        )

    async def get_binding(self, platform: str, thread_id: str) -> str | None:
        value = await self._scalar(
            "read a thread binding",
            "SELECT session_id FROM bindings WHERE platform = ? AND thread_id = ?",
            platform,
            thread_id,
        )
        return None if value is None else str(value)

    # -- the durable inbox -----------------------------------------------------------------

    async def accept_inbound(self, records: Sequence[InboxRecord]) -> list[bool]:
        accepted: list[bool] = []
        async with self._use("accept inbound messages", transaction=True) as conn:
            for record in records:
                changed = await conn.run(
                    "INSERT INTO inbox (id, platform, payload, state, accepted_at)"
                    " VALUES (?, ?, ?, 'accepted', ?) ON CONFLICT (id) DO NOTHING",
                    (record.id, record.platform, record.payload, record.accepted_at),
                )
                accepted.append(changed == 1)
        return accepted

    async def settle_inbound(self, ids: Sequence[str], state: InboxState) -> None:
        check_settled_state(state)
        if ids:
            await self._settles.settle(ids, state)

    async def _write_settle(self, ids: list[str], state: InboxState) -> None:
        async with self._use("settle inbound messages") as conn:
            await self._settle(conn, ids, state)

    async def _settle(self, conn: SqlConn, ids: Sequence[str], state: InboxState) -> None:
        # One statement: settling is atomic without an explicit transaction.
        if ids:
            await conn.run(
                f"UPDATE inbox SET state = ? WHERE id {self.dialect.in_list}",
                (state, self.dialect.list_param(ids)),
            )

    async def get_inbound(self, ids: Sequence[str]) -> list[InboxRecord]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        rows = await self._fetch(
            "read inbox records",
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id {self.dialect.in_list}",
            self.dialect.list_param(wanted),
        )
        return in_order(wanted, [inbox_record(row) for row in rows])

    async def unanswered_inbound(self) -> list[InboxRecord]:
        rows = await self._fetch(
            "read the unanswered inbox",
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE state = 'accepted'"
            f" ORDER BY accepted_at, {self.dialect.insert_order}",
        )
        return [inbox_record(row) for row in rows]

    async def prune_inbound(self, before: float) -> int:
        return await self._run(
            "prune the inbox",
            "DELETE FROM inbox WHERE state <> 'accepted' AND accepted_at < ?",
            before,
        )

    # -- replicas: conversation leases ----------------------------------------------------

    async def try_acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = self.dialect.now
        rows = await self._fetch(
            "take a conversation lease",
            f"INSERT INTO conversation_leases (key, owner, expires_at) VALUES (?, ?, {now} + ?)"
            " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner,"
            " expires_at = excluded.expires_at"
            " WHERE conversation_leases.owner = excluded.owner"
            f" OR conversation_leases.expires_at < {now}"
            " RETURNING key",
            key,
            owner,
            ttl,
        )
        return bool(rows)

    async def renew_leases(self, owner: str, ttl: float) -> list[str]:
        now = self.dialect.now
        rows = await self._fetch(
            "renew conversation leases",
            f"UPDATE conversation_leases SET expires_at = {now} + ?"
            f" WHERE owner = ? AND expires_at >= {now} RETURNING key",
            ttl,
            owner,
        )
        return sorted(str(row[0]) for row in rows)

    async def release_lease(self, key: str, owner: str) -> None:
        await self._run(
            "release a conversation lease",
            "DELETE FROM conversation_leases WHERE key = ? AND owner = ?",
            key,
            owner,
        )
