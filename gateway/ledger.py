"""The durable inbox: every accepted inbound message, until its run commits.

``accept`` records a message before the adapter confirms it to the platform (Telegram's
next poll offset, Slack's ack) and answers False for a duplicate. Accepts made in the same
event-loop turn (one ``getUpdates`` batch, a burst of Slack events) share one storage
transaction. The runtime settles a message as answered in the commit of the run that took
it in; at start, ``unanswered`` gives back what a crash left behind. Without storage the
ledger is a bounded in-memory set: deduplication still works, recovery does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from adapters.base import ChatTarget, InboundMessage
from adapters.common.memory import Recent
from runtime.storage.base import InboxRecord, InboxState, Storage
from runtime.tasks import TaskSet

log = logging.getLogger(__name__)

MEMORY_IDS = 10_000
"""Ids remembered for deduplication when there is no storage."""


def inbox_id(message: InboundMessage) -> str:
    return f"{message.platform}:{message.message_id}"


def encode(message: InboundMessage) -> str:
    """What recovery needs to answer the message after a restart. Images are not kept
    (the platform's copy is): a recovered message says so in its text."""
    target = message.target
    notes = list(message.attachment_notes)
    notes += ["image (not kept across a restart)"] * len(message.images)
    return json.dumps(
        {
            "text": message.text,
            "user_id": message.user_id,
            "user_name": message.user_name,
            "scope": message.scope,
            "topic": message.topic,
            "is_direct": message.is_direct,
            "addressed": message.addressed,
            "edited": message.edited,
            "notes": notes,
            "match": dict(message.match),
            "agent": message.agent,
            "target": {
                "chat_id": target.chat_id,
                "thread_id": target.thread_id,
                "reply_to": target.reply_to,
                "extra": dict(target.extra),
            },
        }
    )


def decode(record: InboxRecord) -> InboundMessage:
    data: dict[str, Any] = json.loads(record.payload)
    target = data["target"]
    message_id = record.id.removeprefix(f"{record.platform}:")
    return InboundMessage(
        platform=record.platform,
        message_id=message_id,
        text=data["text"],
        user_id=data["user_id"],
        user_name=data["user_name"],
        scope=data["scope"],
        target=ChatTarget(
            platform=record.platform,
            chat_id=target["chat_id"],
            thread_id=target["thread_id"],
            reply_to=target["reply_to"],
            extra=target["extra"],
        ),
        topic=data["topic"],
        is_direct=data["is_direct"],
        addressed=data["addressed"],
        edited=data["edited"],
        attachment_notes=tuple(data["notes"]),
        match=data["match"],
        agent=data["agent"],
    )


class Ledger:
    def __init__(self, storage: Storage | None) -> None:
        self._storage = storage
        self._seen = Recent(MEMORY_IDS)
        self._batch: list[tuple[InboxRecord, asyncio.Future[bool]]] = []
        self._flushing = TaskSet()

    @property
    def durable(self) -> bool:
        return self._storage is not None

    async def accept(self, message: InboundMessage) -> bool:
        """True when the message is new (now recorded), False for a duplicate."""
        key = inbox_id(message)
        if self._storage is None:
            return self._seen.add(key)
        record = InboxRecord(
            id=key,
            platform=message.platform,
            payload=encode(message),
            state="accepted",
            accepted_at=time.time(),
        )
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush_soon)
        self._batch.append((record, future))
        return await future

    def _flush_soon(self) -> None:
        batch, self._batch = self._batch, []
        self._flushing.spawn(self._flush(batch), name="inbox-accept")

    async def _flush(self, batch: list[tuple[InboxRecord, asyncio.Future[bool]]]) -> None:
        """One transaction for the batch; every waiting ``accept`` gets its answer, or the
        error, so none is left hanging."""
        assert self._storage is not None
        futures = [future for _, future in batch]
        try:
            results = await self._storage.accept_inbound([record for record, _ in batch])
            answers = list(zip(futures, results, strict=True))
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, accepted in answers:
            if not future.done():
                future.set_result(accepted)

    async def settle(self, message: InboundMessage, state: InboxState = "answered") -> None:
        """For messages answered outside a run (commands, refusals, notes)."""
        if self._storage is None:
            return
        try:
            await self._storage.settle_inbound([inbox_id(message)], state)
        except Exception:
            log.exception("could not settle %s in the inbox", inbox_id(message))

    async def records(self, ids: Sequence[str]) -> list[InboxRecord]:
        if self._storage is None:
            return []
        return await self._storage.get_inbound(ids)

    async def unanswered(self) -> list[InboxRecord]:
        if self._storage is None:
            return []
        return await self._storage.unanswered_inbound()

    async def expire(self, records: Sequence[InboxRecord]) -> None:
        if self._storage is not None and records:
            await self._storage.settle_inbound([r.id for r in records], "expired")

    async def prune(self, older_than: float) -> int:
        if self._storage is None:
            return 0
        return await self._storage.prune_inbound(time.time() - older_than)
