"""Slack Web API calls as the gateway sees them: errors converted in one place, short
rate limits retried inside the client, and Slack's native chat streams.

``api`` wraps every Web API call: a ``SlackApiError`` becomes the adapter error the
gateway understands (a final 429 becomes ``RateLimited`` with Slack's Retry-After, so
the chat's budget blocks and the metrics count it). The client itself retries a 429
whose Retry-After is short (``ShortRateLimitRetry``); a long one goes to the budget at
once instead of stalling one call.

``SlackStream`` is the renderer's ``NativeStream`` for threaded replies: it is handed
the whole reply text each time and sends only what is new (``chat.startStream``, then
``chat.appendStream``, ``chat.stopStream``), rolling over to a new message before the
length limit. When the text changed behind what it streamed (a tool status line that
went away) it stops the stream and shows the rest of the reply by ``chat.update``.
Where the API refuses streams it uses ``chat.postMessage`` + ``chat.update`` for that
reply and tells the adapter, which then stops offering native streams.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.base import ChatTarget
from adapters.errors import (
    DeliveryError,
    MarkupRejected,
    MessageTooLong,
    NotAllowed,
    RateLimited,
)

log = logging.getLogger(__name__)

STREAM_UNSUPPORTED = frozenset({"unknown_method", "not_allowed", "method_not_supported"})
CREDENTIAL_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)
_TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "markdown_text_too_long"})
_MARKUP = frozenset({"invalid_blocks", "invalid_blocks_format", "invalid_markdown"})
_NOT_ALLOWED = CREDENTIAL_ERRORS | {
    "unknown_method",
    "not_allowed",
    "method_not_supported",
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "restricted_action",
    "cant_update_message",
    "message_not_found",
    "thread_not_found",
    "no_permission",
    "missing_scope",
    "ekm_access_denied",
    "team_access_not_granted",
}
STREAM_PIECE = 10_000  # characters per start/append call (Slack caps markdown_text at 12k)
MARKDOWN_BLOCK_LIMIT = 12_000


class SlackNotAllowed(NotAllowed):
    def __init__(self, code: str) -> None:
        super().__init__(f"Slack refused the call: {code}")
        self.code = code


class SlackCallFailed(DeliveryError):
    def __init__(self, code: str) -> None:
        super().__init__(f"the Slack call failed: {code}")
        self.code = code


def error_code(exc: SlackApiError) -> str:
    response = exc.response
    return str(response.get("error") or f"http_{response.status_code}")


def retry_after(headers: Mapping[str, Any]) -> float:
    """Slack's Retry-After header (seconds), whatever its key's case or value's shape."""
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                break
    return 1.0


def convert(exc: SlackApiError) -> DeliveryError:
    code = error_code(exc)
    if exc.response.status_code == 429 or code == "ratelimited":
        return RateLimited(retry_after(exc.response.headers))
    if code in _TOO_LONG:
        return MessageTooLong(f"Slack refused the message as too long ({code})")
    if code in _MARKUP:
        return MarkupRejected(f"Slack could not render the message ({code})")
    if code in _NOT_ALLOWED:
        return SlackNotAllowed(code)
    return SlackCallFailed(code)


async def api(call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Await one Web API call; every failure comes out as a ``DeliveryError``."""
    try:
        return await call
    except SlackApiError as exc:
        raise convert(exc) from exc
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise SlackCallFailed(type(exc).__name__) from exc


class ShortRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 inside the client only when Slack asks for a short wait."""

    def __init__(self, max_retry_count: int = 1, max_wait: float = 3.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = retry_after(response.headers)
        log.warning(
            "Slack rate limited %s (attempt %d): %s after %.0fs",
            request.url.rsplit("/", 1)[-1],
            state.current_attempt + 1,
            "retrying" if wait <= self.max_wait else "not retrying",
            wait,
        )
        return wait <= self.max_wait


def markdown_blocks(text: str) -> list[dict[str, Any]]:
    """A ``markdown`` block renders standard markdown as the stream does; over its size
    limit the plain text alone is sent."""
    return [{"type": "markdown", "text": text}] if len(text) <= MARKDOWN_BLOCK_LIMIT else []


def cut_point(text: str, start: int, end: int) -> int:
    """Where to end a message holding at most ``text[:end]``: the last paragraph, line or
    word break at or after ``start``, else ``end``."""
    if end >= len(text):
        return len(text)
    window = text[start:end]
    for sep in ("\n\n", "\n", " "):
        found = window.rfind(sep)
        if found >= 0:
            return start + found
    return end


class _Unsupported(Exception):
    """The workspace has no chat streams: switch this reply to post + update."""


class SlackStream:
    def __init__(
        self,
        client: AsyncWebClient,
        target: ChatTarget,
        *,
        limit: int,
        on_result: Callable[[bool], None],
    ) -> None:
        assert target.thread_id is not None
        self._client = client
        self._target = target
        self._thread_ts = target.thread_id
        self._limit = limit
        self._on_result = on_result  # (streams work?) for the adapter's probe
        self._ts: str | None = None  # the message streaming now
        self._base = 0  # where the current message starts in the reply text
        self._shown = ""  # the reply text delivered so far
        self._streamed: list[tuple[str, str]] = []  # (ts, text) per streamed message
        self._edits: list[tuple[str, str]] | None = None  # set once streaming gave way
        self._done = False

    async def update(self, text: str) -> bool:
        await self._show(text)
        return True

    async def finish(self, text: str) -> bool:
        if not self._done:
            await self._show(text, final=True)
            self._done = True
        return True

    async def _show(self, text: str, *, final: bool = False) -> None:
        if self._edits is None and not text.startswith(self._shown):
            # The text changed behind what was streamed (a status line went away):
            # streams only append, so the rest of this reply is shown by edits.
            await self._stop()
            self._edits = list(self._streamed)
        if self._edits is None:
            try:
                await (self._finish_stream(text) if final else self._advance(text))
                return
            except _Unsupported:
                self._edits = []
        await self._show_by_edits(text)

    async def _finish_stream(self, text: str) -> None:
        rest = text[len(self._shown) :]
        fits = len(text) <= self._base + self._limit and len(rest) <= STREAM_PIECE
        if self._ts is not None and fits:
            # The last words ride on the stop call: one request fewer per reply.
            await self._stop(rest)
            self._shown = text
            return
        await self._advance(text)
        await self._stop()

    async def _advance(self, text: str) -> None:
        while len(self._shown) < len(text):
            start = len(self._shown)
            end = self._base + self._limit
            if len(text) > end:
                end = cut_point(text, max(start, self._base + self._limit // 2), end)
            else:
                end = len(text)
            while len(self._shown) < end:
                piece_end = min(end, len(self._shown) + STREAM_PIECE)
                await self._put(text[len(self._shown) : piece_end])
                self._shown = text[:piece_end]
            if end < len(text):
                await self._stop()  # this message is full: the rest goes in a new one
                self._base = end

    async def _put(self, piece: str) -> None:
        if self._ts is not None:
            await api(
                self._client.chat_appendStream(
                    channel=self._target.chat_id, ts=self._ts, markdown_text=piece
                )
            )
            self._streamed[-1] = (self._ts, self._streamed[-1][1] + piece)
            return
        try:
            response = await api(
                self._client.chat_startStream(
                    channel=self._target.chat_id,
                    thread_ts=self._thread_ts,
                    markdown_text=piece,
                    recipient_user_id=self._target.extra.get("user") or None,
                    recipient_team_id=self._target.extra.get("team") or None,
                )
            )
        except SlackNotAllowed as exc:
            if exc.code not in STREAM_UNSUPPORTED or self._shown:
                raise
            log.info("Slack chat streams are not available (%s); using post + update", exc.code)
            self._on_result(False)
            raise _Unsupported from exc
        self._on_result(True)
        self._ts = str(response["ts"])
        self._streamed.append((self._ts, piece))

    async def _stop(self, last_words: str = "") -> None:
        if self._ts is None:
            return
        await api(
            self._client.chat_stopStream(
                channel=self._target.chat_id, ts=self._ts, markdown_text=last_words or None
            )
        )
        self._streamed[-1] = (self._ts, self._streamed[-1][1] + last_words)
        self._ts = None

    async def _show_by_edits(self, text: str) -> None:
        """chat.postMessage + chat.update, a message per ``limit`` characters."""
        assert self._edits is not None
        pieces, start = [], 0
        while start < len(text):
            end = cut_point(text, start + 1, start + self._limit)
            pieces.append(text[start:end])
            start = end
        for index, piece in enumerate(pieces):
            if index < len(self._edits):
                ts, shown = self._edits[index]
                if shown != piece:
                    await api(
                        self._client.chat_update(
                            channel=self._target.chat_id,
                            ts=ts,
                            text=piece,
                            blocks=markdown_blocks(piece),
                        )
                    )
                    self._edits[index] = (ts, piece)
                continue
            response = await api(
                self._client.chat_postMessage(
                    channel=self._target.chat_id,
                    thread_ts=self._thread_ts,
                    text=piece,
                    blocks=markdown_blocks(piece),
                )
            )
            self._edits.append((str(response["ts"]), piece))
