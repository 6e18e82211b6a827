"""The storage seam: what the runtime needs from a store.

SQLite (``runtime.storage.sqlite``) is the default; PostgreSQL
(``runtime.storage.postgres``) is the same protocol for several replicas. Writes happen at
run boundaries: everything a run produced goes through ``commit_run`` in one transaction.
The durable inbox records each inbound message when it is accepted (it is also the
deduplication ledger); a run's commit marks its messages answered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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


InboxState = Literal["accepted", "answered", "expired"]

NotifyCallback = Callable[[str], None]
Unlisten = Callable[[], Awaitable[None]]


@dataclass(frozen=True, kw_only=True, slots=True)
class InboxRecord:
    """An inbound message as the durable inbox keeps it (also the deduplication ledger)."""

    id: str
    """``"{platform}:{message_id}"``, the globally unique key."""
    platform: str
    payload: str
    """JSON written by the gateway; storage never looks inside."""
    state: InboxState
    accepted_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class RunCommit:
    """Everything one run wrote, committed together.

    ``session`` is upserted (created on first commit, title and updated_at refreshed);
    ``entries`` are appended in order, a ``CompactMarker`` among them also writing its
    archive row. ``answered`` inbox ids are marked answered in the same transaction, so
    a reply is never both committed and still waiting in the inbox.
    """

    session: SessionRecord
    entries: Sequence[StoredEntry] = field(default=())
    usage: Sequence[UsageRecord] = field(default=())
    events: Sequence[EventRecord] = field(default=())
    answered: Sequence[str] = field(default=())


def check_settled_state(state: InboxState) -> None:
    """Settling moves a record out of 'accepted'; asking for 'accepted' is a bug."""
    if state not in ("answered", "expired"):
        raise ValueError(f"An inbox record settles as 'answered' or 'expired', not {state!r}.")


class Storage(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...

    async def commit_run(self, commit: RunCommit) -> None: ...

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
        """The whole stored log of a session, compaction markers included (what a chat
        page shows as the conversation's history)."""
        ...

    async def get_active_topic(self, agent: str, sender: str) -> str | None: ...

    async def active_topics(self) -> dict[tuple[str, str], str]:
        """Every ``(agent, sender)`` with an active topic, read at once: a router preloads
        them so the first message of a pair needs no read of its own."""
        ...

    async def set_active_topic(self, agent: str, sender: str, topic_key: str | None) -> None: ...

    async def bind_thread(self, platform: str, thread_id: str, session_id: str) -> None: ...

    async def get_binding(self, platform: str, thread_id: str) -> str | None: ...

    async def accept_inbound(self, records: Sequence[InboxRecord]) -> list[bool]:
        """Insert each record (state accepted) in ONE transaction; True per record newly
        accepted, False when that id was already in the ledger (a duplicate)."""
        ...

    async def settle_inbound(self, ids: Sequence[str], state: InboxState) -> None:
        """Mark ids answered (tmp conversations, commands, refusals) or expired."""
        ...

    async def unanswered_inbound(self) -> list[InboxRecord]:
        """Every record still 'accepted', oldest first (for recovery at start)."""
        ...

    async def get_inbound(self, ids: Sequence[str]) -> list[InboxRecord]:
        """The records of ``ids`` in any state, in the order of ``ids`` (each once);
        an id the ledger does not hold (never accepted, or pruned) is left out."""
        ...

    async def prune_inbound(self, before: float) -> int:
        """Delete settled records accepted before ``before``; returns the count."""
        ...

    # -- replicas: conversation leases and wake-ups -----------------------------------

    async def try_acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take or extend the lease on ``key`` for ``ttl`` seconds; False while another
        owner holds an unexpired lease on it."""
        ...

    async def renew_leases(self, owner: str, ttl: float) -> list[str]:
        """Extend every unexpired lease of ``owner``; returns the keys it still holds
        (a lease that expired first is lost, even if nobody took it yet)."""
        ...

    async def release_lease(self, key: str, owner: str) -> None:
        """Give up ``key`` if ``owner`` holds it; another owner's lease is left alone."""
        ...

    async def notify(self, channel: str, payload: str) -> None:
        """Wake every listener of ``channel`` (on PostgreSQL: in every replica)."""
        ...

    async def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        """Call ``callback(payload)`` on the event loop for each notification on
        ``channel`` until the returned coroutine function is awaited or the store closes."""
        ...

    async def usage_totals(self, session_id: str) -> tuple[int, int]:
        """(prompt_tokens, completion_tokens) summed over the session."""
        ...
