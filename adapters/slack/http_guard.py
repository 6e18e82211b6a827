"""The door of Slack's HTTP mode: verify the signature, then check the body's shape.

Both run before bolt sees the request. bolt verifies signatures too, but only after it
has parsed the body (a JSON array or a non-numeric timestamp then raise, and aiohttp
answers 500 with a traceback). Here the raw bytes are authenticated first (401), then
parsed the way bolt will parse them (400 when that cannot work), so a bad request never
reaches code that assumes Slack's shapes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

MAX_SKEW = 300  # seconds; Slack's own advice for replay protection
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"

# Keys bolt reads at the top of a payload to route it, with the types it assumes.
_ID_HOLDERS = ("enterprise", "team", "user", "channel", "view", "container")


def signature_valid(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """Whether ``body`` carries Slack's v0 signature for ``secret``, made recently."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not secret or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > MAX_SKEW:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def payload_of(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The payload bolt would parse from ``body``, or None when it is not a usable one."""
    try:
        text = body.decode("utf-8")
        if content_type == "application/json" or text.startswith("{"):
            payload = json.loads(text)
        elif "payload" in text:
            payload = json.loads(dict(parse_qsl(text, keep_blank_values=True)).get("payload", "{}"))
        else:
            payload = dict(parse_qsl(text, keep_blank_values=True))
    except ValueError:  # not UTF-8, not JSON
        return None
    return payload if isinstance(payload, dict) and _routable(payload) else None


def _routable(payload: dict[str, Any]) -> bool:
    """Whether the keys bolt routes on have the types it assumes."""
    if not isinstance(payload.get("type", ""), str):
        return False
    for key in _ID_HOLDERS:
        if not isinstance(payload.get(key), dict | str | None):
            return False
    authorizations = payload.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
    ):
        return False
    event = payload.get("event")
    if event is None:
        return True
    return isinstance(event, dict) and _routable_event(event)


def _routable_event(event: dict[str, Any]) -> bool:
    if not isinstance(event.get("type"), str):
        return False
    for key in ("user", "channel", "team", "user_team", "text", "ts", "thread_ts", "subtype"):
        if not isinstance(event.get(key), str | dict | None):
            return False
    nested = (event.get(key) for key in ("message", "assistant_thread", "item", "previous_message"))
    return all(isinstance(value, dict | None) for value in nested)
