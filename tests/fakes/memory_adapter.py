"""An in-memory chat platform behind the Adapter protocol, for pipeline tests.

It is what a platform would show a user: messages with their current text, edits with
timestamps, reactions, typing, renames. Faults are injected per primitive. Real adapters
are tested against fakes of their platform's API; this one tests the shared pipeline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.base import (
    AdapterState,
    ChatTarget,
    InboundMessage,
    InboundSink,
    NativeStream,
    SentMessage,
)
from adapters.errors import DeliveryError, MessageTooLong
from adapters.text.discord_md import to_discord
from adapters.text.format import TextFormat, identity
from adapters.text.slack_mrkdwn import to_slack_mrkdwn
from adapters.text.telegram_html import telegram_length, to_telegram_html

_FORMATS = {
    "telegram_html": TextFormat(limit=1, markup=to_telegram_html, counter=telegram_length),
    "slack_mrkdwn": TextFormat(limit=1, markup=to_slack_mrkdwn),
    "discord": TextFormat(limit=1, markup=to_discord),
    "plain": TextFormat(limit=1, markup=identity, plain=identity),  # as the web chat
}


@dataclass(kw_only=True, slots=True)
class Shown:
    message_id: str
    chat_id: str
    text: str
    markup: bool
    history: list[tuple[float, str]] = field(default_factory=list)


class MemoryAdapter:
    def __init__(self, name: str = "mem", *, limit: int = 4096, markup: str = "plain") -> None:
        self.name = name
        self.text_format = dataclasses.replace(_FORMATS[markup], limit=limit)
        self.deleted: list[str] = []
        self._state: AdapterState = "stopped"
        self.sink: InboundSink | None = None
        self.intake_stopped = False
        self.messages: dict[str, Shown] = {}
        self.order: list[str] = []
        self.edits: list[tuple[float, str, str]] = []  # (time, message id, text)
        self.typing_calls: list[tuple[float, str, bool]] = []
        self.reactions: list[tuple[str, str]] = []  # (message id, emoji)
        self.renames: list[tuple[str, str]] = []  # (chat id, title)
        # A list turns on Telegram-style drafts: previews recorded here, final sent apart.
        self.drafts: list[str] | None = None
        self.faults: dict[str, deque[DeliveryError]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._stopped = asyncio.Event()
        self._connected = asyncio.Event()

    # -- Adapter protocol ------------------------------------------------------------------

    @property
    def state(self) -> AdapterState:
        return self._state

    @property
    def state_detail(self) -> str:
        return ""

    async def stop_intake(self) -> None:
        self.intake_stopped = True

    async def run(self, sink: InboundSink) -> None:
        self.sink = sink
        self._state = "connected"
        self._connected.set()
        try:
            await self._stopped.wait()
        finally:
            self._state = "stopped"

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        await self._maybe_fail("send")
        self._check_length(text, markup=markup)
        message_id = f"{target.chat_id}-{next(self._ids)}"
        self.messages[message_id] = Shown(
            message_id=message_id,
            chat_id=target.chat_id,
            text=text,
            markup=markup,
            history=[(time.monotonic(), text)],
        )
        self.order.append(message_id)
        await self._notify()
        return SentMessage(target=target, message_id=message_id)

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        await self._maybe_fail("edit")
        shown = self.messages[message.message_id]
        if shown.text == text:
            raise AssertionError(f"an edit with unchanged text reached the platform: {text!r}")
        self._check_length(text, markup=markup)
        now = time.monotonic()
        shown.text = text
        shown.markup = markup
        shown.history.append((now, text))
        self.edits.append((now, message.message_id, text))
        await self._notify()

    async def delete(self, message: SentMessage) -> None:
        await self._maybe_fail("delete")
        del self.messages[message.message_id]
        self.order.remove(message.message_id)
        self.deleted.append(message.message_id)
        await self._notify()

    def _check_length(self, text: str, *, markup: bool) -> None:
        size = self.text_format.measure(text, markup=markup)
        if size > self.text_format.limit:
            raise MessageTooLong(f"message is too long ({size} > {self.text_format.limit})")

    async def typing(self, target: ChatTarget, active: bool) -> None:
        await self._maybe_fail("typing")
        self.typing_calls.append((time.monotonic(), target.chat_id, active))
        await self._notify()

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        await self._maybe_fail("react")
        self.reactions.append((message_id, emoji))
        await self._notify()

    async def rename(self, target: ChatTarget, title: str) -> None:
        await self._maybe_fail("rename")
        self.renames.append((target.chat_id, title))
        await self._notify()

    def native_stream(self, target: ChatTarget) -> NativeStream | None:
        return None if self.drafts is None else _Drafts(self)

    def web_routes(self) -> Sequence[web.RouteDef]:
        return []

    # -- test side ---------------------------------------------------------------------------

    def fail_next(self, primitive: str, error: DeliveryError) -> None:
        self.faults[primitive].append(error)

    async def _maybe_fail(self, primitive: str) -> None:
        if self.faults[primitive]:
            raise self.faults[primitive].popleft()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        async def check() -> Any:
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(check(), timeout)

    async def connected(self) -> None:
        await asyncio.wait_for(self._connected.wait(), 5.0)

    def stop(self) -> None:
        self._stopped.set()

    async def deliver(self, message: InboundMessage) -> None:
        assert self.sink is not None, "the adapter is not running"
        await self.sink.handle(message)

    def chat(self, chat_id: str) -> list[str]:
        """What a user in the chat sees: each message's current text, in order."""
        return [self.messages[m].text for m in self.order if self.messages[m].chat_id == chat_id]


class _Drafts:
    """Telegram-style drafts: ``update`` records a preview; the final is a send."""

    preview_only = True

    def __init__(self, adapter: MemoryAdapter) -> None:
        self._adapter = adapter

    async def update(self, text: str) -> bool:
        assert self._adapter.drafts is not None
        self._adapter.drafts.append(text)
        return True

    async def finish(self, text: str) -> bool:
        return False

    def handover(self) -> list[tuple[SentMessage, str]]:
        return []
