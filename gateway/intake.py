"""What travels through the gateway's inbox: a queued message and a run's origin."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from adapters.base import InboundMessage


@dataclass(frozen=True, kw_only=True, slots=True)
class Origin:
    """What the runtime carries for us on a run: the message and when it arrived."""

    message: InboundMessage
    received_at: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Queued:
    """A message in its lane. ``message`` None: handed over by another replica, read it
    back from the inbox; ``accepted`` None: accepted earlier (recovered, handed over)."""

    message: InboundMessage | None
    received_at: float
    accepted: asyncio.Future[bool] | None
    inbox_id: str = ""


def lane_key(message: InboundMessage) -> str:
    """Messages of one conversation share a lane: the sender scope, and the thread."""
    return f"{message.scope}|{message.target.thread_id or ''}"
