"""The SQLite schema as an ordered list of migrations.

The file's ``PRAGMA user_version`` is the number of the last migration applied. Opening a
store applies every newer migration in its own transaction, so a file is always at one
known version. Add a migration at the end, never edit one that has shipped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


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

MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, description="initial schema", statements=_INITIAL),
)

LATEST_VERSION = MIGRATIONS[-1].version


def pending(current: int) -> list[Migration]:
    """The migrations a file at version ``current`` still needs, in order."""
    return [m for m in MIGRATIONS if m.version > current]
