"""Read-only views of conversations: the topic list, the transcript and ``/status``.

Scratch conversations never reach the usage table, so their token use is counted here
as their runs end (``ScratchUsage``); topics read theirs from storage plus what the run
in flight has not committed yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.conversation import Conversation
from runtime.router import Router
from runtime.run import Run
from runtime.storage.base import SessionRecord, Storage
from runtime.transcript import Turn, join_log, visible_turns


@dataclass(frozen=True, kw_only=True, slots=True)
class TopicInfo:
    key: str
    conversation_id: str
    title: str | None
    active: bool
    updated_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ConversationStatus:
    conversation_id: str
    agent: str
    model: str
    topic_key: str | None
    title: str | None
    running: bool
    queued: int
    entries: int
    last_prompt_tokens: int
    prompt_tokens: int
    completion_tokens: int


class ScratchUsage:
    """Token use of scratch conversations, by conversation id."""

    def __init__(self, router: Router) -> None:
        self._router = router
        self._totals: dict[str, tuple[int, int]] = {}
        self._pruned_at = 0

    def get(self, conversation_id: str) -> tuple[int, int]:
        return self._totals.get(conversation_id, (0, 0))

    def count(self, run: Run) -> None:
        conv_id = run.conversation.id
        prompt, completion = self.get(conv_id)
        prompt += sum(u.prompt_tokens for u in run.usage)
        completion += sum(u.completion_tokens for u in run.usage)
        self._totals[conv_id] = (prompt, completion)
        # Forget dropped or evicted scratch conversations; amortised over many runs.
        if len(self._totals) > 2 * self._pruned_at + 64:
            for stale in [i for i in self._totals if self._router.find(i) is None]:
                del self._totals[stale]
            self._pruned_at = len(self._totals)


async def list_topics(
    router: Router, storage: Storage | None, agent: str, sender: str
) -> list[TopicInfo]:
    """Stored and in-memory topics of the pair, newest first (memory is fresher)."""
    active = router.active_key(agent, sender)
    found: dict[str, TopicInfo] = {}
    if storage is not None:
        for rec in await storage.list_sessions(agent, sender):
            if rec.topic_key not in found:
                found[rec.topic_key] = _topic_info(rec, rec.topic_key, active)
    for conv in router.topics_in_memory(agent, sender):
        assert conv.topic_key is not None
        found[conv.topic_key] = _topic_info(conv, conv.topic_key, active)
    return sorted(found.values(), key=lambda t: t.updated_at, reverse=True)


def _topic_info(topic: SessionRecord | Conversation, key: str, active: str | None) -> TopicInfo:
    """A stored topic and one in memory describe themselves by the same fields."""
    return TopicInfo(
        key=key,
        conversation_id=topic.id,
        title=topic.title,
        active=key == active,
        updated_at=topic.updated_at,
    )


async def read_transcript(storage: Storage | None, conv: Conversation) -> list[Turn]:
    """The conversation's visible turns (user and assistant text), read-only."""
    if conv.is_tmp or storage is None:
        return visible_turns(list(conv.history))
    stored = await storage.load_entries(conv.id)
    return visible_turns(join_log(stored, list(conv.pending)))


async def conversation_status(
    storage: Storage | None, scratch: ScratchUsage, conv: Conversation, model: str
) -> ConversationStatus:
    prompt = completion = 0
    if not conv.is_tmp and storage is not None:
        prompt, completion = await storage.usage_totals(conv.id)
    if conv.is_tmp:
        prompt, completion = scratch.get(conv.id)
        in_flight = conv.run.usage if conv.run is not None else []
    else:
        in_flight = conv.pending_usage
    for usage in in_flight:
        prompt += usage.prompt_tokens
        completion += usage.completion_tokens
    return ConversationStatus(
        conversation_id=conv.id,
        agent=conv.agent,
        model=model,
        topic_key=conv.topic_key,
        title=conv.title,
        running=conv.run is not None,
        queued=len(conv.steering) if conv.has_queued else 0,
        entries=len(conv.history),
        last_prompt_tokens=conv.last_prompt_tokens,
        prompt_tokens=prompt,
        completion_tokens=completion,
    )
