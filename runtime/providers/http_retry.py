"""Shared HTTP plumbing of the streaming providers: retries, SSE lines, error mapping.

``stream_with_retries`` owns one streaming call from its first attempt to its last
event. A provider hands it the request and a parser (response -> events); the parser
raises ``StreamBroken`` for a malformed or truncated stream. Connect errors, timeouts,
429, 5xx and retryable stream breaks are retried only until the first event has been
yielded; after that any failure becomes ``ProviderStreamError`` so the caller keeps what
it already streamed. Every httpx exception is converted here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderModelError,
    ProviderStreamError,
    ProviderUnavailableError,
)
from runtime.providers.base import ProviderEvent

log = logging.getLogger(__name__)

# Error codes (OpenAI ``error.code``) and types (Anthropic ``error.type``) that mean
# "no such model" even when the status is 400 rather than 404.
_MODEL_NOT_FOUND = frozenset({"model_not_found", "not_found_error"})
_DETAIL_LIMIT = 300


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): the server's
        ``Retry-After`` when given, else exponential backoff with jitter; both capped."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.backoff_max))
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry - 1))
        # Jitter in the upper half keeps the backoff growing while spreading clients out.
        return ceiling * random.uniform(0.5, 1.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamCall:
    """One streaming POST; ``provider`` is the config name used in error messages."""

    provider: str
    model: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class SseEvent:
    event: str
    data: str


class StreamBroken(Exception):
    """Raised by a parser: the stream was malformed, cut short or carried an error.

    ``retryable`` marks breaks worth another attempt if nothing was yielded yet.
    """

    def __init__(self, detail: str, *, retryable: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


@dataclass(frozen=True, kw_only=True, slots=True)
class _Retry:
    detail: str
    retry_after: float | None = None
    cause: BaseException | None = None


Parser = Callable[[httpx.Response], AsyncGenerator[ProviderEvent, None]]


MAX_CONCURRENT_STREAMS = 64


def make_client(*, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    # More connections than the stream limiter lets through, so the pool never queues:
    # httpcore scans its whole request queue on every assignment (quadratic under load).
    limits = httpx.Limits(max_connections=MAX_CONCURRENT_STREAMS + 8)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


async def iter_sse(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Server-sent events of a response; an unterminated event at EOF is dropped, as
    the SSE spec says."""
    event = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SseEvent(event=event or "message", data="\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def load_json(data: str) -> dict[str, Any]:
    """A stream payload as a JSON object, or ``StreamBroken``."""
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise StreamBroken(f"malformed JSON in the stream ({_clip(data)})") from exc
    if not isinstance(value, dict):
        raise StreamBroken(f"unexpected JSON in the stream ({_clip(data)})")
    return value


async def stream_with_retries(
    client: httpx.AsyncClient,
    call: StreamCall,
    policy: RetryPolicy,
    parse: Parser,
    limiter: asyncio.Semaphore | None = None,
) -> AsyncGenerator[ProviderEvent, None]:
    """``limiter`` bounds the streams in flight per provider; waiting runs queue on it
    in FIFO order (released during backoff, so a retrying call holds no slot)."""
    attempt = 0
    while True:
        attempt += 1
        started = False
        try:
            opened = client.stream("POST", call.url, headers=call.headers, json=call.body)
            async with _slot(limiter), opened as resp:
                if resp.status_code == 200:
                    async with aclosing(parse(resp)) as events:
                        async for event in events:
                            started = True
                            yield event
                    return
                await resp.aread()
                retry = _status_failure(call, resp)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            retry = _transport_failure(call, exc, started=started)
        except StreamBroken as exc:
            retry = _broken_failure(call, exc, started=started)
        if attempt > policy.max_retries:
            raise ProviderUnavailableError(
                f"The provider '{call.provider}' is unavailable ({retry.detail}), "
                f"still after {attempt} attempts; try again later or check "
                f"providers.{call.provider}.base_url."
            ) from retry.cause
        delay = policy.delay(attempt, retry.retry_after)
        log.warning(
            "Provider %r: attempt %d of %d failed (%s); retrying in %.2fs",
            call.provider,
            attempt,
            policy.max_retries + 1,
            retry.detail,
            delay,
        )
        await asyncio.sleep(delay)


@contextlib.asynccontextmanager
async def _slot(limiter: asyncio.Semaphore | None) -> AsyncIterator[None]:
    if limiter is None:
        yield
        return
    async with limiter:
        yield


def _broke_off(call: StreamCall, detail: str) -> ProviderStreamError:
    return ProviderStreamError(
        f"The model stream broke off after the reply started: {detail} "
        f"(provider '{call.provider}')."
    )


def _transport_failure(
    call: StreamCall, exc: httpx.HTTPError | httpx.InvalidURL, *, started: bool
) -> _Retry:
    detail = _describe(exc)
    if started:
        raise _broke_off(call, detail) from exc
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        raise ProviderError(
            f"The provider '{call.provider}' has an unusable URL {call.url!r} ({detail}); "
            f"check providers.{call.provider}.base_url."
        ) from exc
    return _Retry(detail=detail, cause=exc)


def _broken_failure(call: StreamCall, exc: StreamBroken, *, started: bool) -> _Retry:
    if started:
        raise _broke_off(call, exc.detail) from exc
    if not exc.retryable:
        raise ProviderStreamError(
            f"The provider '{call.provider}' sent a broken stream before the reply "
            f"started: {exc.detail}."
        ) from exc
    return _Retry(detail=exc.detail, cause=exc)


def _status_failure(call: StreamCall, resp: httpx.Response) -> _Retry:
    """Map a non-200 answer: retry 429 and 5xx, raise everything else."""
    status = resp.status_code
    message, code = _error_fields(resp)
    if status == 429 or status >= 500:
        return _Retry(detail=f"HTTP {status}: {message}", retry_after=_retry_after(resp))
    name = call.provider
    if status in (401, 403):
        raise ProviderAuthError(
            f"The provider '{name}' refused the API key (HTTP {status}); "
            f"check providers.{name}.api_key."
        )
    if status == 404 or code in _MODEL_NOT_FOUND:
        raise ProviderModelError(
            f"The provider '{name}' does not know the model '{call.model}' "
            f"(HTTP {status}: {message}); check the agent's model and "
            f"providers.{name}.base_url."
        )
    raise ProviderError(f"The provider '{name}' rejected the request (HTTP {status}): {message}")


def _error_fields(resp: httpx.Response) -> tuple[str, str | None]:
    """The server's error message and its code (OpenAI) or type (Anthropic)."""
    try:
        body = resp.json()
    except ValueError:
        return _clip(resp.text) or resp.reason_phrase or "no details", None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _clip(resp.text), None
    message = str(error.get("message") or "no details")
    code = error.get("code") or error.get("type")
    return _clip(message), code if isinstance(code, str) else None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {_clip(text)}" if text else type(exc).__name__


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "\u2026"


class HttpProvider:
    """What the HTTP providers share: the config name, endpoint and key, the retry
    policy, the limiter on streams in flight, and the client (closed only if made here).
    Subclasses set ``default_base_url`` and build their request in ``stream``."""

    default_base_url = ""

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        client: httpx.AsyncClient | None = None,
        max_concurrency: int = MAX_CONCURRENT_STREAMS,
    ) -> None:
        self.name = name
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._api_key = api_key
        self._policy = RetryPolicy(
            max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max
        )
        self._limiter = asyncio.Semaphore(max_concurrency)
        self._owns_client = client is None
        self._client = client or make_client(
            connect_timeout=connect_timeout, read_timeout=read_timeout
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    def _stream(self, call: StreamCall, parse: Parser) -> AsyncGenerator[ProviderEvent, None]:
        return stream_with_retries(self._client, call, self._policy, parse, self._limiter)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
