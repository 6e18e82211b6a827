"""A page's frames as the gateway sees them: the sender scope of a browser and its
messages as ``InboundMessage``s (pure, tested without a server)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from adapters.base import ChatTarget, InboundMessage

PLATFORM = "webchat"
SCOPE_PREFIX = "webchat:user:"
DEFAULT_USER_NAME = "you"


def scope_of(client_id: str) -> str:
    return f"{SCOPE_PREFIX}{client_id}"


def client_of(sender: str) -> str | None:
    return sender[len(SCOPE_PREFIX) :] if sender.startswith(SCOPE_PREFIX) else None


def inbound_message(
    client_id: str,
    text: str,
    *,
    message_id: str,
    user_name: str,
    agent: str | None,
    extra: Mapping[str, str] | None = None,
) -> InboundMessage:
    """A page's message as the pipeline sees it: always a direct, addressed message.
    ``extra`` rides on the reply's target, so ``send`` knows what the reply answers."""
    # ``request`` tells one reply's renderer from another's (see ``typing``).
    details = {**(extra or {}), "request": message_id, **({"agent": agent} if agent else {})}
    return InboundMessage(
        platform=PLATFORM,
        message_id=f"{client_id}:{message_id}",
        text=text,
        user_id=client_id,
        user_name=user_name or DEFAULT_USER_NAME,
        scope=scope_of(client_id),
        target=ChatTarget(platform=PLATFORM, chat_id=client_id, extra=details),
        is_direct=True,
        addressed=True,
        agent=agent,
    )


def same_origin(request: web.Request) -> bool:
    # Browsers always send Origin, so another site's page cannot drive a user's chat.
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host
