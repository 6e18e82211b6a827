"""One Socket Mode session of the Slack adapter, reporting its state as it goes.

The app-level token is checked first with ``apps.connections.open`` (slack-sdk's socket
client would retry a refused token forever), and the URL it returns is the first one the
client connects to. The client reconnects by itself; its frames tell the state:
"connected" on ``hello``, "reconnecting" on ``disconnect`` or a closed socket. A watch
loop notices a silent loss and gives up after ``RECONNECT_GIVE_UP`` seconds, so the
gateway's supervisor starts over with a fresh session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from aiohttp import WSMessage, WSMsgType
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import AdapterState
from adapters.errors import ConnectionLost, CredentialsRejected
from adapters.slack.outbound import CREDENTIAL_ERRORS, SlackNotAllowed, api

log = logging.getLogger(__name__)

PING_INTERVAL = 10.0
WATCH_INTERVAL = 5.0
RECONNECT_GIVE_UP = 120.0

APP_TOKEN_FIX = (
    "Slack refused the app-level token ({code}): set SLACK_APP_TOKEN "
    "(adapters.slack.app_token) to an app-level token (xapp-...) with the "
    'connections:write scope, or use mode = "http".'
)

StateCallback = Callable[[AdapterState, str], None]


class SocketSession:
    def __init__(
        self, app: AsyncApp, client: AsyncWebClient, app_token: str, on_state: StateCallback
    ) -> None:
        self._app = app
        self._client = client
        self._app_token = app_token
        self._on_state = on_state
        self._handler: AsyncSocketModeHandler | None = None
        self._hello_session: object | None = None
        self._closed = False

    async def serve(self) -> None:
        """Connect and stay connected until cancelled."""
        if not self._app_token:
            raise CredentialsRejected(APP_TOKEN_FIX.format(code="empty"))
        try:
            opened = await api(self._client.apps_connections_open(app_token=self._app_token))
        except SlackNotAllowed as exc:
            if exc.code in CREDENTIAL_ERRORS:
                raise CredentialsRejected(APP_TOKEN_FIX.format(code=exc.code)) from exc
            raise
        handler = AsyncSocketModeHandler(self._app, self._app_token, ping_interval=PING_INTERVAL)
        handler.client.wss_uri = str(opened["url"])
        handler.client.on_message_listeners.append(self._on_frame)
        handler.client.on_close_listeners.append(self._on_close)
        self._handler = handler
        try:
            await handler.connect_async()  # type: ignore[no-untyped-call]
            await self._watch(handler)
        finally:
            self._handler = None
            await handler.close_async()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        """Stop reading events (at shutdown): envelopes not acknowledged by now are
        redelivered by Slack, and the watch no longer reconnects."""
        self._closed = True
        if self._handler is not None:
            await self._handler.client.disconnect()  # type: ignore[no-untyped-call]

    async def _on_frame(self, message: WSMessage) -> None:
        if message.type != WSMsgType.TEXT or not str(message.data).startswith("{"):
            return
        kind = json.loads(message.data).get("type")
        if kind == "hello" and self._handler is not None:
            self._hello_session = self._handler.client.current_session
            self._on_state("connected", "")
        elif kind == "disconnect":
            self._on_state("reconnecting", "Slack asked for a new connection")

    async def _on_close(self, message: WSMessage) -> None:
        if self._handler is not None and not await self._handler.client.is_connected():
            self._on_state("reconnecting", "socket closed")

    async def _watch(self, handler: AsyncSocketModeHandler) -> None:
        lost_since: float | None = None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self._closed:
                continue
            client = handler.client
            if await client.is_connected():
                lost_since = None
                if client.current_session is self._hello_session:
                    self._on_state("connected", "")
                continue
            self._on_state("reconnecting", "socket lost")
            lost_since = lost_since or time.monotonic()
            waited = time.monotonic() - lost_since
            log.warning("the Slack socket is still reconnecting after %.0fs", waited)
            if waited > RECONNECT_GIVE_UP:
                raise ConnectionLost(f"no Slack socket for {RECONNECT_GIVE_UP:.0f}s")
