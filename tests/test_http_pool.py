"""The lean connection pools (runtime/providers/http_pool.py): real httpx and httpcore
against a small HTTP/1.1 server on 127.0.0.1 that counts its connections, can hold its
answers, and can hang up on idle connections without saying so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpcore
import httpx
import pytest

from adapters.telegram.adapter import TelegramAdapter, TelegramSettings
from runtime.providers.http_pool import LeanBackend, LeanConnectionPool, lean_pools
from runtime.providers.http_retry import make_client
from tests.runtime_helpers import wait_for

TIMEOUT = 5.0


class KeepAliveServer:
    """Answers every GET with "ok" on a kept-alive connection; ``hold`` makes answers
    wait for ``release``; ``hang_up`` closes every connection without a word."""

    def __init__(self) -> None:
        self.opened = 0
        self.open_now = 0
        self.most_open = 0
        self.held = asyncio.Event()
        self.held.set()
        self.waiting = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"

    async def stop(self) -> None:
        await self.hang_up()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def hang_up(self) -> None:
        writers, self._writers = list(self._writers), set()
        for writer in writers:
            writer.close()
        for writer in writers:
            await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self._writers.add(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.waiting += 1
                await self.held.wait()
                self.waiting -= 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    s = KeepAliveServer()
    await s.start()
    yield s
    await s.stop()


def lean_client(max_connections: int, keepalive: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive)
    return lean_pools(httpx.AsyncClient(limits=limits, timeout=TIMEOUT))


def pool_of(client: httpx.AsyncClient) -> httpcore.AsyncConnectionPool:
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    return pool


def test_the_model_client_and_the_telegram_bot_get_lean_pools() -> None:
    # Both reach into httpx and PTB internals; a release that renames them fails here.
    clients = [
        make_client(connect_timeout=1, read_timeout=1),
        TelegramAdapter(TelegramSettings(token="1:x")).bot.request._client,  # type: ignore[attr-defined]
    ]
    for client in clients:
        pool = pool_of(client)
        assert type(pool) is LeanConnectionPool
        assert isinstance(pool._network_backend, LeanBackend)


async def test_sequential_requests_reuse_one_connection(server: KeepAliveServer) -> None:
    async with lean_client(4, 4) as client:
        for _ in range(5):
            assert (await client.get(server.url)).text == "ok"
    assert server.opened == 1


async def test_an_idle_connection_the_server_closed_is_replaced_not_used(
    server: KeepAliveServer,
) -> None:
    async with lean_client(4, 4) as client:
        assert (await client.get(server.url)).text == "ok"
        await server.hang_up()  # no "Connection: close": the socket just ends
        # Sent on the dead connection, this would fail with "Server disconnected".
        assert (await client.get(server.url)).text == "ok"
    assert server.opened == 2


async def test_the_limits_hold_under_concurrent_requests(server: KeepAliveServer) -> None:
    server.held.clear()
    async with lean_client(2, 1) as client:
        requests = [asyncio.create_task(client.get(server.url)) for _ in range(6)]
        await wait_for(lambda: server.waiting == 2)  # two connections; four queue in the pool
        server.held.set()
        responses = await asyncio.gather(*requests)
        assert [r.text for r in responses] == ["ok"] * 6
        assert server.most_open == 2
        # Over the keep-alive size, the pool closes idle connections as they free up.
        assert len(pool_of(client).connections) == 1
