"""Shared HTTP plumbing of the streaming providers: the retry loop and the client.

``stream_with_retries`` owns one streaming call from its first attempt to its last
event. A provider hands it the request and a parser factory; the parser
(``body.BodyParser``) turns body bytes into events and raises ``StreamBroken`` for a
malformed or truncated stream. Connect errors, timeouts, 429, 5xx and retryable stream
breaks are retried only until the first content event has been yielded, each announced by
a ``RetryNotice`` before its backoff; after that any failure becomes
``ProviderStreamError`` so the caller keeps what it already streamed. ``failures``
converts every httpx exception and error status into a typed ``ProviderError``.

Connections are reused: after the stream's terminator the rest of the body (the
chunked encoding's last chunk, usually already buffered) is read, briefly, so httpcore
returns the connection to the pool instead of closing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from runtime.backoff import Backoff, log_retry
from runtime.providers.base import ProviderEvent, RetryNotice
from runtime.providers.body import BodyParser, StreamBroken
from runtime.providers.failures import (
    Failure,
    broken_failure,
    exhausted,
    status_failure,
    transport_failure,
)
from runtime.providers.http_pool import lean_pools

log = logging.getLogger(__name__)

# How long the rest of a finished body may take to arrive before the connection is
# given up (closed) instead: a server that holds it open must not hold up the run.
DRAIN_TIMEOUT = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): the server's
        ``Retry-After`` when given, else the shared backoff; both capped."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.backoff_max))
        return Backoff(base=self.backoff_base, cap=self.backoff_max).delay(retry)


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamCall:
    """One streaming POST. ``provider`` is the config name, ``base_url`` and
    ``key_source`` (the setting the key came from) are named in error hints."""

    provider: str
    model: str
    url: str
    base_url: str = ""
    key_source: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)


ParserFactory = Callable[[], BodyParser]


MAX_CONCURRENT_STREAMS = 64


def make_client(*, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    # More connections than the stream limiter lets through, so the pool never queues:
    # httpcore scans its whole request queue on every assignment (quadratic under load).
    limits = httpx.Limits(max_connections=MAX_CONCURRENT_STREAMS + 8)
    return lean_pools(httpx.AsyncClient(timeout=timeout, limits=limits))


async def stream_with_retries(
    client: httpx.AsyncClient,
    call: StreamCall,
    policy: RetryPolicy,
    new_parser: ParserFactory,
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
                    parser = new_parser()
                    chunks = _body_chunks(resp)
                    # The hot path: one pass per network chunk, no generator per layer.
                    async for chunk in chunks:
                        for event in parser.feed(chunk):
                            started = True
                            yield event
                        if parser.done:
                            await _drain(chunks)
                            break
                    for event in parser.finish():
                        started = True
                        yield event
                    return
                await resp.aread()
                retry = status_failure(call, resp)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            retry = transport_failure(call, exc, started=started)
        except StreamBroken as exc:
            retry = broken_failure(call, exc, started=started)
        notice = _next_retry(call, policy, retry, attempt)
        yield notice  # before the wait, so a UI shows "retrying" during it
        await asyncio.sleep(notice.delay)


def _next_retry(call: StreamCall, policy: RetryPolicy, retry: Failure, attempt: int) -> RetryNotice:
    """Log the retry and return its notice (which carries the delay); once the retries
    have run out, raise the error typed by this last failure instead."""
    if attempt > policy.max_retries:
        raise exhausted(call, retry, attempt) from retry.exc
    delay = policy.delay(attempt, retry.retry_after)
    log_retry(
        log,
        f"Provider {call.provider!r} stream",
        retry.detail,
        attempt=attempt,
        delay=delay,
        attempts=policy.max_retries + 1,
    )
    return RetryNotice(attempt=attempt, delay=delay, cause=retry.cause)


def _body_chunks(resp: httpx.Response) -> AsyncIterator[bytes]:
    # An uncompressed body (the usual SSE answer) skips httpx's decoder and re-chunker.
    if resp.headers.get("content-encoding", "identity") == "identity":
        return resp.aiter_raw()
    return resp.aiter_bytes()


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows the terminator so the connection can be reused; a body that
    does not end promptly, or breaks, only costs the connection."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            async for _ in chunks:
                pass


@contextlib.asynccontextmanager
async def _slot(limiter: asyncio.Semaphore | None) -> AsyncIterator[None]:
    if limiter is None:
        yield
        return
    async with limiter:
        yield


class HttpProvider:
    """What the HTTP providers share: the config name, endpoint and key, the retry
    policy, the limiter on streams in flight, and the client (closed only if made here).
    Subclasses set ``default_base_url`` and build their request in ``stream``.

    ``api_key_source`` names the setting the key came from, for error hints: the
    environment variable (``OPENAI_API_KEY``) or ``providers.NAME.api_key`` (default)."""

    default_base_url = ""

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str,
        api_key_source: str | None = None,
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
        self.api_key_source = api_key_source or f"providers.{name}.api_key"
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

    def _stream(
        self,
        model: str,
        path: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any],
        new_parser: ParserFactory,
    ) -> AsyncGenerator[ProviderEvent, None]:
        call = StreamCall(
            provider=self.name,
            model=model,
            url=f"{self.base_url}{path}",
            base_url=self.base_url,
            key_source=self.api_key_source,
            headers=headers,
            body=body,
        )
        return stream_with_retries(self._client, call, self._policy, new_parser, self._limiter)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
