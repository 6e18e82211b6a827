"""What every adapter offers the gateway, and what it hands the gateway.

An adapter translates: platform events become ``InboundMessage``s passed to the
gateway's ``InboundSink``; the gateway answers through the adapter's primitives
(send, edit, delete, typing, react, rename). Everything shared (dedup, access, commands,
streaming, budgets) lives in the gateway, which imports this module; adapters never
import the gateway.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from aiohttp import web

from adapters.text.format import TextFormat
from runtime.history import Image

log = logging.getLogger(__name__)

AdapterState = Literal["stopped", "starting", "connected", "reconnecting", "failed"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatTarget:
    """Where a reply goes. ``chat_id`` keys the outbound budget; ``thread_id`` is the
    platform thread, if any; ``extra`` holds what only the adapter reads."""

    platform: str
    chat_id: str
    thread_id: str | None = None
    reply_to: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def budget_key(self) -> str:
        return f"{self.platform}:{self.chat_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SentMessage:
    target: ChatTarget
    message_id: str


Media = tuple[tuple[Image, ...], tuple[str, ...]]
"""Downloaded images, and a note for each attachment the agent cannot see."""

MediaFetch = Callable[[], Awaitable[Media]]


@dataclass(frozen=True, kw_only=True, slots=True)
class InboundMessage:
    """One platform message, reduced to what the pipeline needs.

    ``scope`` is the platform-qualified sender scope that owns the conversation
    (``telegram:user:42``, ``discord:thread:99``...); ``topic`` is the thread key when the
    message is in a platform thread, else None. ``addressed`` is true when the bot was
    mentioned or replied to, or the message is in a thread the bot owns.
    """

    platform: str
    message_id: str
    text: str
    user_id: str
    user_name: str
    scope: str
    target: ChatTarget
    topic: str | None = None
    is_direct: bool = False
    addressed: bool = False
    from_bot: bool = False
    edited: bool = False
    images: tuple[Image, ...] = ()
    attachment_notes: tuple[str, ...] = ()
    match: Mapping[str, str] = field(default_factory=dict)  # chat/guild/channel/team
    agent: str | None = None  # an explicit agent choice (the web chat's picker)
    # Attachments still to download: fetched in the message's lane, so a large file
    # never holds up the adapter's intake or another chat.
    media: MediaFetch | None = None


class StatusTracker:
    """An adapter's connection state for ``/readyz``: transitions are logged, and the
    last 32 kept so tests (and a debugging operator) can see the path it took."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state: AdapterState = "stopped"
        self.detail = ""
        self.history: deque[AdapterState] = deque(maxlen=32)

    def set(self, state: AdapterState, detail: str = "") -> None:
        if state != self.state:
            log.info("%s adapter %s%s", self.name, state, f" ({detail})" if detail else "")
            self.history.append(state)
        self.state, self.detail = state, detail


class StatusReporting:
    """The ``state`` / ``state_detail`` half of the ``Adapter`` protocol, read from the
    adapter's ``StatusTracker`` (``_connection``), so no adapter hand-rolls its state."""

    _connection: StatusTracker

    @property
    def state(self) -> AdapterState:
        return self._connection.state

    @property
    def state_detail(self) -> str:
        return self._connection.detail

    @property
    def state_history(self) -> deque[AdapterState]:
        return self._connection.history


class InboundSink(Protocol):
    async def handle(self, message: InboundMessage) -> bool:
        """Queue the message and record it durably; returns before it is answered, so
        an adapter may confirm it to the platform once this returns. False when the
        gateway does not take it at all (another bot's, ungated, shutting down)."""
        ...


class NativeStream(Protocol):
    """A platform's own streaming (Telegram drafts, Slack chat streams)."""

    preview_only: bool
    """What ``update`` shows is dropped at the end and the final text is a call of its
    own (Telegram's drafts), rather than the message the reply ends in (Slack's)."""

    async def update(self, text: str) -> bool:
        """Show the reply so far; False when the platform cannot stream here after all,
        and the renderer falls back to send + edit."""
        ...

    async def finish(self, text: str) -> bool:
        """End the stream. True when it delivered the final text itself; False leaves
        the final message to the renderer (chunked, converted to the platform's markup)."""
        ...

    def handover(self) -> list[tuple[SentMessage, str]]:
        """The messages the stream left on the platform, each with the text it shows,
        for the renderer to edit (or delete) when it takes over after ``update`` or
        ``finish`` answered False; empty when the stream left none."""
        ...


class Adapter(Protocol):
    name: str
    text_format: TextFormat  # what markdown becomes on the platform, and its length limit

    @property
    def state(self) -> AdapterState: ...

    @property
    def state_detail(self) -> str: ...

    async def stop_intake(self) -> None:
        """Stop taking platform events (polling, socket reads, webhook posts answered 503
        so the platform redelivers later); sending keeps working for replies in flight."""
        ...

    async def run(self, sink: InboundSink) -> None:
        """Connect and serve until cancelled. Raises ``CredentialsRejected`` when the
        platform refuses the credentials for good; any other exception is retried by
        the gateway's supervisor with backoff."""
        ...

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage: ...

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None: ...

    async def delete(self, message: SentMessage) -> None:
        """Remove a message the gateway sent (a reply that shrank no longer needs it)."""
        ...

    async def typing(self, target: ChatTarget, active: bool) -> None:
        """Show (or, where the platform needs it, clear) a busy indicator."""
        ...

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None: ...

    async def rename(self, target: ChatTarget, title: str) -> None: ...

    def native_stream(self, target: ChatTarget) -> NativeStream | None: ...

    def web_routes(self) -> Sequence[web.RouteDef]: ...
