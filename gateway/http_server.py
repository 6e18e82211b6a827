"""The one aiohttp server: health, readiness, metrics, and routes adapters mount
(web chat, Slack events, Telegram webhook)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from gateway.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

ReadinessProbe = Callable[[], tuple[bool, dict[str, Any]]]


class HttpServer:
    def __init__(self, host: str, port: int, *, metrics: Metrics, ready: ReadinessProbe) -> None:
        self._host = host
        self._port = port
        self._metrics = metrics
        self._ready = ready
        self.app = web.Application(client_max_size=8 * 1024 * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics_page)
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        self.app.router.add_routes(routes)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._site is None or self._site._server is None:
            return self._port
        sockets = getattr(self._site._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self, sock: socket.socket | None = None) -> None:
        """Serve on ``sock`` if given (bound early, see `gateway.startup`), else bind now."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = (
            web.SockSite(self._runner, sock)
            if sock is not None
            else web.TCPSite(self._runner, self._host, self._port)
        )
        await self._site.start()
        log.info("HTTP server listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, detail = self._ready()
        body = {"ready": ready, **detail}
        return web.Response(
            status=200 if ready else 503, text=json.dumps(body), content_type="application/json"
        )

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})
