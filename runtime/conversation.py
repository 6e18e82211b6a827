"""One conversation: its model context, what is not yet saved, its run and its queue.

``history`` is what the model sees (after compaction, a summary then the retained
turns); ``pending`` is what was appended since the last commit, in log order, markers
included. Tmp conversations never have pending entries: they never reach storage.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

from runtime.history import CompactMarker, Entry, StoredEntry, UserEntry
from runtime.messages import UserMessage
from runtime.steering import SteeringQueue
from runtime.storage.base import EventRecord, RunCommit, SessionRecord, UsageRecord

if TYPE_CHECKING:
    from runtime.run import Run


class Conversation:
    __slots__ = (
        "_steering",
        "agent",
        "answered",
        "auto_compact",
        "compact_failed_run",
        "compaction_noticed",
        "created_at",
        "history",
        "id",
        "just_compacted",
        "last_prompt_tokens",
        "lock",
        "pending",
        "pending_events",
        "pending_usage",
        "run",
        "sender",
        "title",
        "title_task",
        "topic_key",
        "updated_at",
    )

    def __init__(
        self,
        *,
        agent: str,
        sender: str,
        topic_key: str | None,
        id: str | None = None,
        title: str | None = None,
        history: list[Entry] | None = None,
        created_at: float | None = None,
    ) -> None:
        now = time.time()
        self.id = id or uuid.uuid4().hex
        self.agent = agent
        self.sender = sender
        self.topic_key = topic_key
        self.title = title
        self.history: list[Entry] = history if history is not None else []
        self.created_at = created_at if created_at is not None else now
        self.updated_at = now
        self.pending: list[StoredEntry] = []
        self.pending_usage: list[UsageRecord] = []
        self.pending_events: list[EventRecord] = []
        self._steering: SteeringQueue | None = None
        # Inbox ids of user messages now in history: settled as answered with the commit.
        self.answered: list[str] = []
        self.run: Run | None = None
        # Held by a run or a compaction for its whole length; routing never waits on it.
        self.lock = asyncio.Lock()
        self.last_prompt_tokens = 0
        self.auto_compact = True
        self.just_compacted = False
        self.compaction_noticed = False
        self.compact_failed_run: str | None = None
        self.title_task: asyncio.Task[None] | None = None

    @property
    def steering(self) -> SteeringQueue:
        """Created on first use: most conversations never steer, and idle ones are many."""
        if self._steering is None:
            self._steering = SteeringQueue()
        return self._steering

    @property
    def has_queued(self) -> bool:
        return bool(self._steering)

    def take_in(self, message: UserMessage, *, steered: bool) -> UserEntry:
        """Append a user message to history, remembering its inbox id as answered."""
        entry = message.to_entry(steered=steered)
        self.append(entry)
        if message.inbox_id is not None:
            self.answered.append(message.inbox_id)
        return entry

    @property
    def is_tmp(self) -> bool:
        return self.topic_key is None

    @property
    def is_running(self) -> bool:
        return self.run is not None

    def append(self, entry: Entry) -> None:
        self.history.append(entry)
        self.updated_at = time.time()  # idle eviction counts from the last entry
        if not self.is_tmp:
            self.pending.append(entry)

    def replace_history(self, history: list[Entry], marker: CompactMarker) -> None:
        self.history = history
        if not self.is_tmp:
            self.pending.append(marker)

    def record_usage(self, usage: UsageRecord) -> None:
        self.last_prompt_tokens = usage.prompt_tokens
        if not self.is_tmp:
            self.pending_usage.append(usage)

    def record_event(self, event: EventRecord) -> None:
        if not self.is_tmp:
            self.pending_events.append(event)

    def session_record(self) -> SessionRecord:
        assert self.topic_key is not None
        return SessionRecord(
            id=self.id,
            agent=self.agent,
            sender=self.sender,
            topic_key=self.topic_key,
            title=self.title,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def take_commit(self) -> RunCommit | None:
        """What to write now; cleared only by ``commit_succeeded`` so a failed write is
        retried at the next boundary instead of being lost."""
        if self.is_tmp:
            return None
        self.updated_at = time.time()
        return RunCommit(
            session=self.session_record(),
            entries=tuple(self.pending),
            usage=tuple(self.pending_usage),
            events=tuple(self.pending_events),
            answered=tuple(self.answered),
        )

    def commit_succeeded(self, commit: RunCommit) -> None:
        del self.pending[: len(commit.entries)]
        del self.pending_usage[: len(commit.usage)]
        del self.pending_events[: len(commit.events)]
        del self.answered[: len(commit.answered)]
