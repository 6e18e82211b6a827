"""Start-up problems in the operator's words: one sentence naming the problem and the fix.

`bind_listener` takes the server's port before anything slow starts, so a port in use
fails in milliseconds; `listen_failure` turns the OSError of a failed bind into a
`StartupError`;
`exposure_warnings` lists what is risky but allowed (a web chat reachable from other
machines with no login in front of it).
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from gateway.config import GatewayConfig
from gateway.describe import webchat_url
from gateway.errors import StartupError

_PORT_FIX = "set server.port or AGENT_GATEWAY_PORT"
_HOST_FIX = 'set server.host to "127.0.0.1", "0.0.0.0" or an address of this machine'


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening, non-blocking socket on ``host:port`` (port 0 picks a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise listen_failure(host, port, exc) from None
    try:
        # As aiohttp does: a restart may bind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise listen_failure(host, port, exc) from None
    return sock


def listen_failure(host: str, port: int, exc: OSError) -> StartupError:
    """The error for a server that could not listen on ``host:port``."""
    where = f"cannot listen on {host}:{port}"
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return StartupError(f"{where}: the host is not an address of this machine; {_HOST_FIX}")
    if exc.errno == errno.EADDRINUSE:
        return StartupError(
            f"{where}: the port is already in use by another process; stop it or {_PORT_FIX}"
        )
    if exc.errno == errno.EACCES:
        return StartupError(
            f"{where}: permission denied (ports below 1024 need privileges); "
            f"{_PORT_FIX} to 1024 or above"
        )
    reason = exc.strerror or type(exc).__name__
    return StartupError(f"{where}: {reason.lower()}; {_PORT_FIX}, or server.host")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: assume it is reachable


def exposure_warnings(config: GatewayConfig) -> list[str]:
    """Risky settings worth one line at start (the gateway runs anyway)."""
    webchat = config.adapters.webchat
    if webchat is None or not webchat.enabled:
        return []
    host = webchat.host if webchat.port is not None else config.server.host
    if is_loopback(host):
        return []
    return [
        f"warning: the web chat at {webchat_url(config, webchat)} listens beyond this machine "
        "with no login: anyone who can reach it can talk to your agents; set server.host "
        '(or adapters.webchat.host) to "127.0.0.1", or put an authenticating proxy in front'
    ]
