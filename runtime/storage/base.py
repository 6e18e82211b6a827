"""The storage seam: what the runtime needs from a store.

One implementation here (SQLite via aiosqlite, ``runtime.storage.sqlite``); the plan for
several replicas is PostgreSQL behind the same protocol. Writes happen at run
boundaries: everything a run produced goes through ``commit_run`` in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runtime.history import Entry, StoredEntry


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionRecord:
    id: str
    agent: str
    sender: str
    topic_key: str
    title: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageRecord:
    model: str
    prompt_tokens: int
    completion_tokens: int
    at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class EventRecord:
    """A run-level event worth keeping (run started/ended, compaction...), as JSON."""

    kind: str
    data_json: str
    at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class RunCommit:
    """Everything one run wrote, committed together.

    ``session`` is upserted (created on first commit, title and updated_at refreshed);
    ``entries`` are appended in order, a ``CompactMarker`` among them also writing its
    archive row.
    """

    session: SessionRecord
    entries: Sequence[StoredEntry] = field(default=())
    usage: Sequence[UsageRecord] = field(default=())
    events: Sequence[EventRecord] = field(default=())


class Storage(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...

    async def commit_run(self, commit: RunCommit) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def find_session(self, agent: str, sender: str, topic_key: str) -> SessionRecord | None:
        """The newest session of that agent, sender and topic key."""
        ...

    async def list_sessions(self, agent: str, sender: str) -> list[SessionRecord]:
        """Every session of the pair, newest first."""
        ...

    async def load_context(self, session_id: str) -> list[Entry]:
        """The model context of a session, rebuilt after its last compaction."""
        ...

    async def load_entries(self, session_id: str) -> list[StoredEntry]:
        """The raw append-only log, markers included."""
        ...

    async def set_title(self, session_id: str, title: str) -> None: ...

    async def get_active_topic(self, agent: str, sender: str) -> str | None: ...

    async def set_active_topic(self, agent: str, sender: str, topic_key: str | None) -> None: ...

    async def bind_thread(self, platform: str, thread_id: str, session_id: str) -> None: ...

    async def get_binding(self, platform: str, thread_id: str) -> str | None: ...

    async def mark_processed(self, platform: str, message_id: str) -> bool:
        """Record an inbound message id; False when it was seen before (a duplicate)."""
        ...

    async def usage_totals(self, session_id: str) -> tuple[int, int]:
        """(prompt_tokens, completion_tokens) summed over the session."""
        ...
