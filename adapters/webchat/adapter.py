"""The local web chat: a page and a websocket served by the gateway's own HTTP server.

How the pieces interact. ``web_routes`` serves the page (``webchat/page.py``) and its
websocket. Each socket says hello with a client id (the page keeps it in localStorage)
and joins that client's set of sockets (``webchat/clients.py``), so every tab of one
browser shows the same chat. Frames from the page become ``InboundMessage``s handed to
the sink ``run`` stored; the gateway answers
through send / edit / typing / react / rename, which broadcast JSON frames to the
client's sockets. The gateway renames only persisted conversations, so a runtime title
listener also shows the titles of scratch conversations in the page header.

What the page shows is rebuilt from the runtime, never kept in the page: on hello and
after a command that changes the conversation (``/topic KEY``, ``/new``) the adapter
sends a ``history`` frame with that conversation's visible turns. Leaving a scratch
conversation keeps it: before ``/new`` or ``/topic KEY`` its turns are saved as a topic
named ``chat-<date>-<time>``, listed with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError

from adapters.approval import ApprovalPrompt
from adapters.base import (
    ChatTarget,
    InboundMessage,
    InboundSink,
    NativeStream,
    SentMessage,
    StatusReporting,
    StatusTracker,
)
from adapters.text.format import TextFormat, identity
from adapters.webchat.approval import decide, question_frame, settled_frame
from adapters.webchat.clients import Clients, send
from adapters.webchat.frames import (
    CLIENT_FRAME,
    DecisionFrame,
    Frame,
    HelloFrame,
    MessageFrame,
    StopFrame,
    text_frame,
)
from adapters.webchat.greeting import agent_card
from adapters.webchat.inbound import (
    DEFAULT_USER_NAME,
    PLATFORM,
    client_of,
    inbound_message,
    same_origin,
    scope_of,
)
from adapters.webchat.page import load_page, page_response
from adapters.webchat.views import ChatViews
from runtime.agent_runtime import AgentRuntime
from runtime.conversation import Conversation
from runtime.events import TitleChanged
from runtime.tasks import TaskSet

log = logging.getLogger(__name__)

SINK_WAIT = 5.0  # a page may connect in the moment between server start and run()


@dataclass(frozen=True, kw_only=True, slots=True)
class WebchatSettings:
    path: str = "/"  # where the page is served on the gateway's HTTP server
    default_agent: str | None = None  # the picker's first choice (else the first agent)


@dataclass(kw_only=True, slots=True)
class _Session:
    """One open socket; ``client_id`` is unset until its hello."""

    ws: web.WebSocketResponse
    client_id: str | None = None
    name: str = DEFAULT_USER_NAME


class WebchatAdapter(StatusReporting):
    name = PLATFORM
    # The page renders the markdown itself.
    text_format = TextFormat(limit=100_000, markup=identity, plain=identity)

    def __init__(self, settings: WebchatSettings, runtime: AgentRuntime) -> None:
        self._runtime = runtime
        path = settings.path
        self._path = path
        self._base = path if path.endswith("/") else f"{path}/"
        self._default_agent = settings.default_agent
        self._connection = StatusTracker(PLATFORM)
        self._sink: InboundSink | None = None
        self._ready = asyncio.Event()
        self._clients = Clients()
        self._views = ChatViews(runtime)
        self._tasks = TaskSet()
        self._page: str | None = None
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:8]  # ids stay unique across restarts
        runtime.add_title_listener(self._on_title)

    @property
    def state_detail(self) -> str:
        return f"{len(self._clients)} clients, {len(self._clients.sockets)} sockets"

    @property
    def default_agent(self) -> str:
        names = self._runtime.agents.names()
        if self._default_agent in names or not names:
            return self._default_agent or ""
        return names[0]

    # -- lifecycle -----------------------------------------------------------------------

    async def stop_intake(self) -> None:
        """Frames that arrive from now on are not taken (the page keeps its socket for
        replies in flight)."""
        self._sink = None

    async def run(self, sink: InboundSink) -> None:
        """Connected at once: the transport is the gateway's own server."""
        self._sink = sink
        self._connection.set("connected")
        self._ready.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self._ready.clear()
            self._sink = None
            self._connection.set("stopped")
            await self._close_all()

    async def _close_all(self) -> None:
        closing = [
            ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping")
            for ws in list(self._clients.sockets)
        ]
        await asyncio.gather(self._tasks.cancel(), *closing, return_exceptions=True)

    def web_routes(self) -> Sequence[web.RouteDef]:
        routes = [
            web.get(self._base, self._serve_page),
            web.get(f"{self._base}ws", self._serve_socket),
        ]
        if self._path != self._base:
            routes.append(web.get(self._path, self._redirect))
        return routes

    # -- HTTP ----------------------------------------------------------------------------

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(self._base)

    async def _serve_page(self, request: web.Request) -> web.Response:
        if self._page is None:
            self._page = await load_page()
        return page_response(self._page, request.host)

    def _welcome(self) -> Frame:
        names = self._runtime.agents.names()
        cards = [agent_card(self._runtime.agents.get(name)) for name in names]
        return {
            "type": "welcome",
            "agents": names,
            "agent_info": {card["name"]: card for card in cards},
            "default_agent": self.default_agent,
        }

    async def _serve_socket(self, request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            log.warning("refused a web chat socket from another origin")
            raise web.HTTPForbidden(text="This web chat only accepts its own page.")
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=256 * 1024)
        await ws.prepare(request)
        session = _Session(ws=ws)
        self._clients.sockets.add(ws)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(session, msg.data)
        finally:
            self._clients.sockets.discard(ws)
            self._leave(session)
        return ws

    def _leave(self, session: _Session) -> None:
        if session.client_id is not None:
            self._clients.leave(session.client_id, session.ws)

    # -- frames from the page ------------------------------------------------------------

    async def _on_frame(self, session: _Session, data: str) -> None:
        try:
            frame = CLIENT_FRAME.validate_json(data)
        except ValidationError as exc:
            log.debug("bad web chat frame: %s", exc.errors(include_input=False))
            await send(session.ws, {"type": "error", "text": "The page sent a bad frame."})
            return
        if not isinstance(frame, HelloFrame) and session.client_id is None:
            await send(session.ws, {"type": "error", "text": "Say hello first."})
            return
        match frame:
            case HelloFrame():
                await self._hello(session, frame)
            case MessageFrame():
                await self._message(session, frame)
            case StopFrame():
                await self._stop(session, frame)
            case DecisionFrame():
                await self._decide(session, frame)
            case _:
                assert_never(frame)

    def _agent(self, requested: str | None) -> str | None:
        return requested if requested in self._runtime.agents else None

    async def _hello(self, session: _Session, frame: HelloFrame) -> None:
        if session.client_id not in (None, frame.client_id):
            self._leave(session)
        session.client_id = frame.client_id
        session.name = frame.name or DEFAULT_USER_NAME
        self._clients.join(frame.client_id, session.ws)
        await send(session.ws, {**self._welcome(), "client_id": frame.client_id})
        agent = self._agent(frame.agent) or self.default_agent
        if agent:
            await self._refresh(frame.client_id, agent, history=True, only=session.ws)

    async def _message(self, session: _Session, frame: MessageFrame) -> None:
        assert session.client_id is not None
        if frame.name is not None:
            session.name = frame.name or DEFAULT_USER_NAME
        agent = self._agent(frame.agent)
        echo = {"type": "user", "id": frame.id, "text": frame.text}
        await self._clients.broadcast(session.client_id, echo, skip=session.ws)
        message = inbound_message(
            session.client_id,
            frame.text,
            message_id=frame.id,
            user_name=session.name,
            agent=agent,
            extra=await self._views.before_command(
                session.client_id, agent or self.default_agent, frame.text.strip()
            ),
        )
        await self._deliver(session, message)

    async def _after_command(self, target: ChatTarget) -> None:
        client_id = target.chat_id
        agent = target.extra.get("agent") or self.default_agent
        await self._refresh(client_id, agent, history=target.extra.get("after") == "history")
        saved = target.extra.get("saved")
        if saved:
            notice = f"Your previous chat is kept as the topic {saved} (see Topics)."
            await self._clients.broadcast(client_id, {"type": "notice", "text": notice})

    async def _stop(self, session: _Session, frame: StopFrame) -> None:
        assert session.client_id is not None
        message = inbound_message(
            session.client_id,
            "/stop",
            message_id=f"stop-{uuid.uuid4().hex}",
            user_name=session.name,
            agent=self._agent(frame.agent),
        )
        await self._deliver(session, message)

    async def _decide(self, session: _Session, frame: DecisionFrame) -> None:
        assert session.client_id is not None
        answer = await decide(
            self._sink, frame, client_id=session.client_id, user_name=session.name
        )
        await send(session.ws, answer)

    async def ask_approval(self, target: ChatTarget, prompt: ApprovalPrompt) -> SentMessage:
        message_id = f"{self._id_prefix}-{next(self._ids)}"
        await self._clients.broadcast(target.chat_id, question_frame(message_id, prompt))
        return SentMessage(target=target, message_id=message_id)

    async def settle_approval(self, message: SentMessage, text: str) -> None:
        frame = settled_frame(message.message_id, text)
        await self._clients.broadcast(message.target.chat_id, frame)

    async def _deliver(self, session: _Session, message: InboundMessage) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), SINK_WAIT)
        sink = self._sink
        if sink is None:
            await send(session.ws, {"type": "error", "text": "The web chat is not running."})
            return
        try:
            await sink.handle(message)
        except Exception:
            log.exception("handling web chat message %s failed", message.message_id)
            await send(session.ws, {"type": "error", "text": "That message failed."})

    # -- topics and titles ---------------------------------------------------------------

    async def _refresh(
        self,
        client_id: str,
        agent: str,
        *,
        history: bool = False,
        only: web.WebSocketResponse | None = None,
    ) -> None:
        """Send the client's topic list and the current conversation's title, and with
        ``history`` its turns; to ``only`` one socket (a tab saying hello) or to all."""
        frames = [await self._views.topics_frame(client_id, agent)]
        replying = self._clients.is_replying(client_id)
        shown = await self._views.shown(client_id, agent, history=history, replying=replying)
        self._clients.note_title(client_id, agent, shown.title)
        frames.append({"type": "title", "agent": agent, "title": shown.title})
        if shown.history is not None:
            frames.append(shown.history)
        for frame in frames:
            if only is not None:
                await send(only, frame)
            else:
                await self._clients.broadcast(client_id, frame)

    def _on_title(self, conv: Conversation, event: TitleChanged) -> None:
        client_id = client_of(conv.sender)
        if client_id is None or client_id not in self._clients:
            return
        self._tasks.spawn(self._title_changed(client_id, conv, event.title), name="webchat-title")

    async def _title_changed(self, client_id: str, conv: Conversation, title: str) -> None:
        if self._runtime.router.current(conv.agent, conv.sender) is conv:
            await self._show_title(client_id, conv.agent, title)
        if not conv.is_tmp:
            await self._clients.broadcast(
                client_id, await self._views.topics_frame(client_id, conv.agent)
            )

    async def _show_title(self, client_id: str, agent: str, title: str) -> None:
        # The gateway's rename and our own title listener may both report one title.
        if self._clients.note_title(client_id, agent, title):
            await self._clients.broadcast(
                client_id, {"type": "title", "agent": agent, "title": title}
            )

    # -- outbound primitives -------------------------------------------------------------

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        # Nobody listening is not an error: the reply is in the conversation's history.
        message_id = f"{self._id_prefix}-{next(self._ids)}"
        await self._clients.broadcast(target.chat_id, text_frame("message", message_id, text))
        if "after" in target.extra:
            await self._after_command(target)
        return SentMessage(target=target, message_id=message_id)

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        frame = text_frame("edit", message.message_id, text)
        await self._clients.broadcast(message.target.chat_id, frame)

    async def delete(self, message: SentMessage) -> None:
        frame = {"type": "delete", "id": message.message_id}
        await self._clients.broadcast(message.target.chat_id, frame)

    async def typing(self, target: ChatTarget, active: bool) -> None:
        agent = target.extra.get("agent") or self.default_agent
        # A run that ends with a message queued starts the next run at once, and the
        # next reply's renderer shows typing before the previous one clears it (and may
        # finish before the previous one's last edit lands): the page's indicator is
        # off only when every reply's renderer has said so.
        replying = self._clients.typing(target.chat_id, target.extra.get("request", ""), active)
        frame = {"type": "typing", "agent": agent, "active": replying}
        await self._clients.broadcast(target.chat_id, frame)

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        own_id = message_id.removeprefix(f"{target.chat_id}:")
        frame = {"type": "ack", "message_id": own_id, "emoji": emoji}
        await self._clients.broadcast(target.chat_id, frame)

    async def rename(self, target: ChatTarget, title: str) -> None:
        agent = target.extra.get("agent") or self.default_agent
        current = self._runtime.router.current(agent, scope_of(target.chat_id))
        if current is not None and current.title != title:
            return  # a late title of a conversation the page no longer shows
        await self._show_title(target.chat_id, agent, title)

    def native_stream(self, target: ChatTarget) -> NativeStream | None:
        return None
