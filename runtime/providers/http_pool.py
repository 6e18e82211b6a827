"""httpx connection pools that stay cheap to run with many connections.

httpcore's pool re-examines every connection each time a request arrives or a response
closes, and two things there cost far more than they need to:
- It asks each idle connection whether its socket is readable (a server that hung up).
  The asyncio stream answers through anyio, which builds its whole attribute table for
  every question, a ``getpeername()`` system call included, before the ``poll``.
- Its keep-alive trim counts the pool's connections with a list built per idle
  connection, and each queued request lists every connection twice: quadratic.
With a dozen connections that was ~0.1 ms a request, a quarter of the gateway's CPU in
a burst of streamed replies. ``lean_pools`` keeps httpx's transport and httpcore's
pool, their limits, timeouts, TLS and proxies, and changes only those two things: the
readable check polls the socket kept when the connection opened, and the bookkeeping is
one pass (``LeanConnectionPool``, same decisions in the same order).
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


def lean_pools(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """``client`` with its connection pools (its own transport's, and those of any
    proxies it mounted from the environment) made lean."""
    # httpx takes no pool or network backend of ours, and a transport of our own would
    # drop the proxies it reads from the environment; so the pools it built are changed.
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if not isinstance(pool, httpcore.AsyncConnectionPool):
            continue
        if not isinstance(pool._network_backend, LeanBackend):
            pool._network_backend = LeanBackend(pool._network_backend)
        if type(pool) is httpcore.AsyncConnectionPool:
            # Fresh and without connections: only the bookkeeping method differs.
            pool.__class__ = LeanConnectionPool
    return client


class LeanConnectionPool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its bookkeeping in one pass over the connections."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        # Closed, expired and (while the pool is over its keep-alive size) idle
        # connections leave. Like httpcore, the size compared is that of the whole pool
        # as it shrinks, not the number of idle connections.
        remaining = len(self._connections)
        kept: list[httpcore.AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                remaining -= 1
            elif connection.has_expired() or (
                connection.is_idle() and remaining > self._max_keepalive_connections
            ):
                remaining -= 1
                closing.append(connection)
            else:
                kept.append(connection)
        self._connections = kept
        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            available = next(
                (c for c in kept if c.can_handle_request(origin) and c.is_available()), None
            )
            if available is not None:
                pool_request.assign_to_connection(available)
                continue
            if len(kept) >= self._max_connections:
                idle = next((c for c in kept if c.is_idle()), None)
                if idle is None:
                    continue  # it waits for a connection to free up
                kept.remove(idle)
                closing.append(idle)
            connection = self.create_connection(origin)
            kept.append(connection)
            pool_request.assign_to_connection(connection)
        return closing


class LeanBackend(httpcore.AsyncNetworkBackend):
    """Opens connections with ``inner`` and hands out streams that remember their socket."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout, local_address=local_address, socket_options=socket_options
        )
        return LeanStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options=socket_options)
        return LeanStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class LeanStream(httpcore.AsyncNetworkStream):
    """``inner`` with "is_readable" answered by one ``poll`` on the socket kept at open.
    TLS runs over the same socket, so the stream ``start_tls`` returns keeps it too."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return LeanStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return readable(self._socket)
        return self._inner.get_extra_info(info)


def readable(sock: socket.socket) -> bool:
    """What httpcore asks of an idle connection: would a read return at once (data, or
    the end a server that closed the connection leaves)? A closed socket counts."""
    if sock.fileno() == -1:
        return True
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))
