"""The schema as one ordered list of migrations, each in both SQL dialects.

Every migration carries the same change for SQLite and for PostgreSQL, so both backends
are always at the same numbered version with the same tables. SQLite keeps the number in
``PRAGMA user_version``; PostgreSQL in the one-row table ``schema_version``. Opening a
store applies every newer migration in its own transaction, so a database is always at
one known version. Add a migration at the end, never edit one that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal

from runtime.errors import StorageError
from runtime.storage.dialect import SqlConn, capital

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_INITIAL = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        sender TEXT NOT NULL,
        topic_key TEXT NOT NULL,
        title TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
    """
    CREATE INDEX sessions_by_scope
        ON sessions (agent, sender, topic_key, updated_at)
    """,
    """
    CREATE TABLE entries (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL CHECK (json_valid(data)),
        created_at REAL NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        at REAL NOT NULL
    )
    """,
    "CREATE INDEX events_by_session ON events (session_id, at)",
    """
    CREATE TABLE archives (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        summary TEXT NOT NULL,
        entries TEXT NOT NULL CHECK (json_valid(entries)),
        created_at REAL NOT NULL
    )
    """,
    "CREATE INDEX archives_by_session ON archives (session_id)",
    """
    CREATE TABLE router_state (
        agent TEXT NOT NULL,
        sender TEXT NOT NULL,
        active_topic TEXT NOT NULL,
        PRIMARY KEY (agent, sender)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        at REAL NOT NULL
    )
    """,
    "CREATE INDEX usage_by_session ON usage (session_id)",
    # No foreign key to sessions: a platform thread is bound when it is created, before
    # its session's first run has committed the session row.
    """
    CREATE TABLE bindings (
        platform TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        PRIMARY KEY (platform, thread_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE processed (
        platform TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (platform, message_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX processed_by_time ON processed (at)",
)

# PostgreSQL: the same tables; times stay float seconds (DOUBLE PRECISION) like SQLite's
# REAL, JSON stays text (jsonb would reorder keys and the payloads are opaque here).
_INITIAL_PG = (
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        sender TEXT NOT NULL,
        topic_key TEXT NOT NULL,
        title TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        seq BIGINT GENERATED ALWAYS AS IDENTITY
    )
    """,
    "CREATE INDEX sessions_by_scope ON sessions (agent, sender, topic_key, updated_at)",
    """
    CREATE TABLE entries (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL CHECK (data::json IS NOT NULL),
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (session_id, seq)
    )
    """,
    """
    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX events_by_session ON events (session_id, at)",
    """
    CREATE TABLE archives (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        summary TEXT NOT NULL,
        entries TEXT NOT NULL CHECK (entries::json IS NOT NULL),
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX archives_by_session ON archives (session_id)",
    """
    CREATE TABLE router_state (
        agent TEXT NOT NULL,
        sender TEXT NOT NULL,
        active_topic TEXT NOT NULL,
        PRIMARY KEY (agent, sender)
    )
    """,
    """
    CREATE TABLE usage (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX usage_by_session ON usage (session_id)",
    """
    CREATE TABLE bindings (
        platform TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        PRIMARY KEY (platform, thread_id)
    )
    """,
    """
    CREATE TABLE processed (
        platform TEXT NOT NULL,
        message_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (platform, message_id)
    )
    """,
    "CREATE INDEX processed_by_time ON processed (at)",
)

# The durable inbox replaces the processed-ids table: it is the dedup ledger too. Ids
# seen before the upgrade are not carried over; they were only kept for a week anyway.
_INBOX = """
    CREATE TABLE inbox (
        id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('accepted', 'answered', 'expired')),
        accepted_at {time} NOT NULL{extra}
    )
"""
_INBOX_INDEX = "CREATE INDEX inbox_by_state ON inbox (state, accepted_at)"

# Which replica owns a conversation, until when (seconds since the epoch). A lease not
# renewed in time is free for another replica to take: that is how a dead owner's
# conversations move.
_LEASES = """
    CREATE TABLE conversation_leases (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at {time} NOT NULL
    )
"""
_LEASES_INDEX = "CREATE INDEX conversation_leases_by_owner ON conversation_leases (owner)"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="initial schema", sqlite=_INITIAL, postgres=_INITIAL_PG),
    Migration(
        version=2,
        description="durable inbox replaces processed ids",
        sqlite=(_INBOX.format(time="REAL", extra=""), _INBOX_INDEX, "DROP TABLE processed"),
        postgres=(
            # seq orders records accepted in the same instant, as SQLite's rowid does.
            _INBOX.format(
                time="DOUBLE PRECISION", extra=",\n        seq BIGINT GENERATED ALWAYS AS IDENTITY"
            ),
            _INBOX_INDEX,
            "DROP TABLE processed",
        ),
    ),
    Migration(
        version=3,
        description="conversation leases for replicas",
        sqlite=(_LEASES.format(time="REAL"), _LEASES_INDEX),
        postgres=(_LEASES.format(time="DOUBLE PRECISION"), _LEASES_INDEX),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def pending(current: int) -> list[Migration]:
    """The migrations a file at version ``current`` still needs, in order."""
    return [m for m in MIGRATIONS if m.version > current]


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionKeeping:
    """How a backend keeps its schema version, and which dialect its migrations use."""

    dialect: Literal["sqlite", "postgres"]
    read: str
    """SQL whose one value is the version (NULL, or no row, for an empty database)."""
    write: Callable[[int], Sequence[str]]
    """The statements that record a new version (an int, so formatting it is safe)."""
    setting: str
    """Where ``[storage]`` points at another database: "path at another file"."""


async def migrate(
    begin: Callable[[], AbstractAsyncContextManager[SqlConn]],
    keeping: VersionKeeping,
    label: str,
) -> None:
    """Apply every pending migration, each in a transaction ``begin`` opens. The backend
    makes that transaction exclusive, so the version read inside it stays true until
    the migration is applied: processes opening one database at once never apply a
    migration twice."""
    while True:
        async with begin() as conn:
            rows = await conn.fetch(keeping.read)
            current = int(rows[0][0]) if rows and rows[0][0] is not None else 0
            if current > LATEST_VERSION:
                raise StorageError(
                    f"{capital(label)} has schema version {current}, newer than version "
                    f"{LATEST_VERSION} that this agent-gateway knows; upgrade agent-gateway "
                    f"or point [storage] {keeping.setting}."
                )
            todo = pending(current)
            if not todo:
                return
            migration = todo[0]
            statements = migration.sqlite if keeping.dialect == "sqlite" else migration.postgres
            for statement in (*statements, *keeping.write(migration.version)):
                await conn.run(statement)
        _log.info(
            "%s migrated to schema version %d (%s)",
            capital(label),
            migration.version,
            migration.description,
        )
