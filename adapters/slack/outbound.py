"""Slack Web API calls as the gateway sees them: errors converted in one place, short
rate limits retried inside the client, and Slack's native chat streams.

``api`` wraps every Web API call: a ``SlackApiError`` becomes the adapter error the
gateway understands (a final 429 becomes ``RateLimited`` with Slack's Retry-After, so
the chat's budget blocks and the metrics count it). The client itself retries a 429
whose Retry-After is short (``ShortRateLimitRetry``); a long one goes to the budget at
once instead of stalling one call.

``SlackStream`` is the renderer's ``NativeStream`` for threaded replies: it is handed
the whole reply text each time and streams only what is new through slack_sdk's
``chat_stream`` (``chat.startStream``, ``appendStream``, ``stopStream``). Whatever it
cannot stream (a status line that went away, a reply longer than one message, a
workspace without streams) it leaves to the renderer's send and edit, handing over the
message it streamed; a refusal also tells the adapter, which stops offering streams.
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
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.base import ChatTarget, SentMessage
from adapters.errors import (
    DeliveryError,
    MarkupRejected,
    MessageTooLong,
    NotAllowed,
    RateLimited,
)
from adapters.text.format import TextFormat

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
    "cant_delete_message",
    "message_not_found",
    "thread_not_found",
    "no_permission",
    "missing_scope",
    "ekm_access_denied",
    "team_access_not_granted",
}
STREAM_PIECE = 10_000  # characters per start/append call (Slack caps markdown_text at 12k)


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


class SlackStream:
    """One threaded reply streamed with slack_sdk's ``chat_stream`` while it only grows
    and fits in one message, rendered with the adapter's ``TextFormat`` so it shows what
    a sent reply shows (Slack renders a stream like the markdown block sends carry).
    When it cannot go on (streams refused, the text changed behind what was streamed,
    or it outgrew one message) it stops and answers False;
    the renderer then takes over by send and edit, adopting the streamed message
    (``handover``), so chunking and send-and-edit live in one place: the renderer."""

    preview_only = False

    def __init__(
        self,
        client: AsyncWebClient,
        target: ChatTarget,
        text_format: TextFormat,
        *,
        on_result: Callable[[bool], None],
    ) -> None:
        assert target.thread_id is not None
        self._client = client
        self._target = target
        self._format = text_format  # what a sent reply shows, so the stream shows the same
        self._on_result = on_result  # (streams work?) for the adapter's probe
        self._stream: AsyncChatStream | None = None
        self._streamed = ""  # handed to the stream (the SDK keeps what a failure left)
        self._ended = False  # stopped: by finishing, or by giving way to the renderer

    async def update(self, text: str) -> bool:
        return await self._go(text, final=False)

    async def finish(self, text: str) -> bool:
        return await self._go(text, final=True)

    def handover(self) -> list[tuple[SentMessage, str]]:
        ts = None if self._stream is None else self._stream.ts
        if ts is None:
            return []
        return [(SentMessage(target=self._target, message_id=ts), self._streamed)]

    async def _go(self, reply: str, *, final: bool) -> bool:
        text = self._format.render(reply)
        if self._ended:
            return final and text == self._streamed  # a retried finish sends nothing twice
        if not text.startswith(self._streamed) or self._format.measure(text) > self._format.limit:
            await self._end()
            return False
        try:
            if not final:
                await self._append(text)
            elif self._stream is not None or len(text) - len(self._streamed) <= STREAM_PIECE:
                # The last words ride on the stop call: one request fewer per reply.
                await self._end(text)
            else:
                await self._append(text)
                await self._end()
        except _Unsupported:
            self._ended = True
            return False
        return True

    async def _append(self, text: str) -> None:
        stream = await self._open()
        while len(self._streamed) < len(text):
            piece = text[len(self._streamed) : len(self._streamed) + STREAM_PIECE]
            self._streamed += piece
            await self._call(stream.append(markdown_text=piece))

    async def _end(self, text: str | None = None) -> None:
        """Stop the stream, with the rest of ``text`` as its last words."""
        if self._ended:
            return
        rest = "" if text is None else text[len(self._streamed) :]
        if self._stream is None and not rest:
            self._ended = True
            return
        stream = await self._open()
        self._streamed += rest
        await self._call(stream.stop(markdown_text=rest or None))
        self._ended = True

    async def _open(self) -> AsyncChatStream:
        if self._stream is None:
            extra = self._target.extra
            self._stream = await self._client.chat_stream(
                buffer_size=1,  # the renderer already coalesces: send each update at once
                channel=self._target.chat_id,
                thread_ts=str(self._target.thread_id),
                recipient_user_id=extra.get("user") or None,
                recipient_team_id=extra.get("team") or None,
            )
        return self._stream

    async def _call(self, call: Awaitable[AsyncSlackResponse | None]) -> None:
        started = self._stream is not None and self._stream.ts is not None
        try:
            await api(_answered(call))
        except SlackNotAllowed as exc:
            if started or exc.code not in STREAM_UNSUPPORTED:
                raise
            log.info("Slack chat streams are not available (%s); using post + update", exc.code)
            self._on_result(False)
            raise _Unsupported from exc
        if not started:
            self._on_result(True)


async def _answered(call: Awaitable[AsyncSlackResponse | None]) -> AsyncSlackResponse:
    response = await call
    assert response is not None  # buffer_size=1: every append is sent
    return response


class _Unsupported(Exception):
    """The workspace has no chat streams: the renderer sends and edits this reply."""
