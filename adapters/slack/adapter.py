"""The Slack adapter: slack-bolt (async) in Socket Mode or HTTP mode, slack-sdk for calls.

How the pieces interact. ``run`` checks the bot token with ``auth.test`` (``slack/auth``:
team, bot user and bot ids), then serves: in Socket Mode a ``SocketSession``
(``slack/socket``) holds the websocket and reports the state ("connected" on ``hello``,
"reconnecting" while the client reconnects); in HTTP mode ``POST /slack/events`` on the
gateway's server feeds the same bolt ``AsyncApp``, which verifies the signing secret and
answers ``url_verification``. The app's listeners only check and hand off: a redelivered
``event_id`` is dropped, anything else becomes a task owned here, so Slack has its ack
at once whatever the gateway does next. A task turns the event into an
``InboundMessage`` (pure conversion in ``slack/inbound``; files and speaker names from
``slack/lookup``, thread ownership from ``adapters.common.memory``) and hands it to the
sink. Replies come back through send / edit / typing / react / rename and native chat
streams (an assistant thread's greeting, status and title live in ``slack/assistant``);
every Web API failure is converted to the gateway's errors in ``slack/outbound``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest

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
from adapters.common.endpoints import SLACK_API_URL
from adapters.common.identity import BotIdentity
from adapters.common.memory import Recent, ThreadOwnership
from adapters.errors import CredentialsRejected
from adapters.slack.approval import ACTIONS as APPROVAL_ACTIONS
from adapters.slack.approval import answer_press, question_blocks, settled_blocks
from adapters.slack.assistant import DEFAULT_GREETING, Assistant, greet
from adapters.slack.auth import authenticate, authorizer, web_client
from adapters.slack.http_guard import payload_of, signature_valid
from adapters.slack.inbound import (
    PLATFORM,
    command_message,
    parse_message,
    thread_key,
    to_inbound,
)
from adapters.slack.lookup import UserNames, fetch_files
from adapters.slack.outbound import (
    SlackCallFailed,
    SlackStream,
    api,
)
from adapters.slack.socket import SocketSession
from adapters.text.format import TextFormat
from adapters.text.markdown import tables_as_grids
from adapters.text.slack_mrkdwn import to_slack_mrkdwn
from runtime.storage.base import Storage
from runtime.tasks import TaskSet

log = logging.getLogger(__name__)

# Slack refuses text over 40000 characters; mrkdwn escaping grows text, so keep a margin.
# Replies go out as a markdown block, which Slack renders as it renders a chat stream
# (so sent and streamed replies look the same); a block holds 12,000 characters.
MARKDOWN_LIMIT = 12_000
API_TIMEOUT = 30.0
_EMOJI_NAMES = {"\N{EYES}": "eyes", "\N{WHITE HEAVY CHECK MARK}": "white_check_mark"}


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackSettings:
    bot_token: str
    app_token: str = ""
    signing_secret: str = ""
    api_url: str = SLACK_API_URL
    mode: Literal["socket", "http"] = "socket"
    greeting: str = DEFAULT_GREETING
    suggested_prompts: tuple[tuple[str, str], ...] = ()  # (title, message)
    slash_command: str = "/agent"
    respond: Literal["mention", "all"] = "mention"


class SlackAdapter(StatusReporting):
    name: str = PLATFORM
    text_format = TextFormat(limit=MARKDOWN_LIMIT, markup=tables_as_grids)

    def __init__(self, settings: SlackSettings, *, storage: Storage | None = None) -> None:
        self.settings = settings
        self._storage = storage
        api_url = settings.api_url if settings.api_url.endswith("/") else settings.api_url + "/"
        self.client = web_client(api_url, settings.bot_token)
        self.identity: BotIdentity | None = None
        self._sink: InboundSink | None = None
        self._socket: SocketSession | None = None
        self._connection = StatusTracker("slack")
        self._tasks = TaskSet()
        self._events = Recent()
        self._messages = Recent()
        self._threads = ThreadOwnership(PLATFORM, storage)
        self._names = UserNames(self.client)
        self._assistant = Assistant(self.client)
        self._streams_ok: bool | None = None  # None until the first stream says
        self.app = self._build_app()

    # -- running -------------------------------------------------------------------------

    async def run(self, sink: InboundSink) -> None:
        self._connection.set("starting")
        # One connection pool while running; when it is closed the clients fall back to
        # a session per call, so a reply still in flight during a reconnect lands.
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT))
        self.client.session = self.app.client.session = http
        try:
            self.identity = await authenticate(self.client, self.settings.bot_token)
            self._sink = sink
            await self._serve()
        finally:
            self._sink = None
            await self._tasks.cancel()
            await http.close()
            self._connection.set("stopped")

    async def _serve(self) -> None:
        if self.settings.mode == "socket":
            socket = SocketSession(
                self.app, self.client, self.settings.app_token, self._connection.set
            )
            self._socket = socket
            try:
                await socket.serve()
            finally:
                self._socket = None
            return
        if not self.settings.signing_secret:
            raise CredentialsRejected(
                "adapters.slack.signing_secret is empty: HTTP mode needs the app's "
                "Signing Secret (SLACK_SIGNING_SECRET)."
            )
        self._connection.set("connected", "http")
        await asyncio.Event().wait()

    async def stop_intake(self) -> None:
        """HTTP mode answers 503 from now on and Socket Mode stops reading: either way
        Slack redelivers what was not acknowledged."""
        self._sink = None
        if self._socket is not None:
            await self._socket.close()

    def web_routes(self) -> Sequence[web.RouteDef]:
        if self.settings.mode != "http":
            return []
        return [web.post("/slack/events", self._handle_http)]

    async def _handle_http(self, request: web.Request) -> web.Response:
        if self._sink is None:
            return web.Response(status=503, text="The Slack adapter is not running.")
        # Authenticate the raw bytes, then check the shape, before bolt parses anything.
        body = await request.read()
        if not signature_valid(self.settings.signing_secret, request.headers, body):
            log.warning("slack: HTTP request refused: bad signature or stale timestamp")
            return web.Response(status=401, text="invalid signature")
        if payload_of(body, request.content_type) is None:
            log.warning("slack: HTTP request refused: the body is not a Slack payload")
            return web.Response(status=400, text="malformed body")
        response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    # -- bolt listeners: check, then hand off to a task we own ---------------------------

    def _build_app(self) -> AsyncApp:
        http = self.settings.mode == "http"
        # bolt's own client carries no token: ``authorize`` hands it ours per request,
        # from the auth.test that run() made (bolt would otherwise call it again).
        app = AsyncApp(
            client=web_client(self.client.base_url, None),
            authorize=authorizer(lambda: self.identity, self.settings.bot_token),
            name="agent-gateway",
            signing_secret=self.settings.signing_secret if http else "",
            request_verification_enabled=http,
        )
        assistant = AsyncAssistant()
        assistant.thread_started(self._on_thread_started)
        app.use(assistant)
        app.event("app_mention")(self._on_message_event)
        app.event("message")(self._on_message_event)
        app.command(self.settings.slash_command)(self._on_command)
        app.action(APPROVAL_ACTIONS)(self._on_approval)
        # bolt acks only events some listener handles; the rest would be redelivered.
        app.event(re.compile(".*"))(self._on_other_event)
        return app

    def _first_delivery(self, body: dict[str, Any], request: AsyncBoltRequest) -> bool:
        event_id = str(body.get("event_id") or "")
        if not event_id or self._events.add(event_id):
            return True
        retry = request.headers.get("x-slack-retry-num") or ["?"]
        log.info("dropped a redelivered Slack event %s (retry %s)", event_id, retry[0])
        return False

    async def _on_message_event(
        self, body: dict[str, Any], event: dict[str, Any], request: AsyncBoltRequest
    ) -> None:
        if self._first_delivery(body, request):
            self._spawn(self._handle_message(event), "slack-message")

    async def _on_other_event(self, event: dict[str, Any]) -> None:
        log.debug("ignored a Slack %s event", event.get("type"))

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        if self.identity is not None:
            self._spawn(self._deliver(command_message(command, self.identity)), "slack-command")

    async def _on_approval(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self._spawn(answer_press(self.client, body, self._sink), "slack-approval")

    async def _on_thread_started(
        self,
        body: dict[str, Any],
        request: AsyncBoltRequest,
        say: AsyncSay,
        set_suggested_prompts: AsyncSetSuggestedPrompts,
    ) -> None:
        if self._first_delivery(body, request):
            settings = self.settings
            work = greet(say, set_suggested_prompts, settings.greeting, settings.suggested_prompts)
            self._spawn(work, "slack-greeting")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(self._guarded(work), name=name)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:
            log.exception("handling a Slack event failed")

    # -- inbound -------------------------------------------------------------------------

    async def _handle_message(self, event: dict[str, Any]) -> None:
        identity = self.identity
        parsed = parse_message(event, identity) if identity is not None else None
        if identity is None or parsed is None:
            return
        # app_mention and message.channels both deliver a mention: take the first.
        if not self._messages.add(parsed.message_id):
            return
        key = thread_key(parsed.channel, parsed.root_ts)
        owned = parsed.in_channel_thread and not parsed.mentioned and await self._threads.owns(key)
        worth = not parsed.from_bot and (
            parsed.kind == "im" or parsed.mentioned or owned or self.settings.respond == "all"
        )
        # In a DM the speaker is always the same person: no name lookup needed.
        name = await self._names.get(parsed.user) if worth and parsed.kind != "im" else ""
        message = to_inbound(parsed, identity, owned=owned, user_name=name)
        if message is None:
            log.debug("dropped a command addressed to another bot")
            return
        if worth and parsed.files:  # downloaded in the message's lane, not here
            files, token = parsed.files, self.settings.bot_token
            message = dataclasses.replace(message, media=lambda: fetch_files(files, token))
        if message.addressed and not message.from_bot and parsed.kind != "im":
            await self._threads.claim(key, message.scope)
        await self._deliver(message)

    async def _deliver(self, message: InboundMessage) -> None:
        sink = self._sink
        if sink is None:
            log.warning("dropped Slack message %s: the adapter is not running", message.message_id)
            return
        await sink.handle(message)

    # -- outbound ------------------------------------------------------------------------

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        content = _content(text) if markup else {"text": text, "mrkdwn": False}
        response = await api(
            self.client.chat_postMessage(
                channel=target.chat_id, thread_ts=target.thread_id, **content
            )
        )
        self._assistant.replied(target)
        return SentMessage(target=target, message_id=str(response["ts"]))

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        # blocks=[] drops a markdown block the message had: plain text replaces it.
        content = _content(text) if markup else {"text": text, "blocks": []}
        await api(
            self.client.chat_update(
                channel=message.target.chat_id, ts=message.message_id, **content
            )
        )

    async def ask_approval(self, target: ChatTarget, prompt: ApprovalPrompt) -> SentMessage:
        response = await api(
            self.client.chat_postMessage(
                channel=target.chat_id,
                text=prompt.text,
                blocks=question_blocks(prompt),
                thread_ts=target.thread_id,
            )
        )
        return SentMessage(target=target, message_id=str(response["ts"]))

    async def settle_approval(self, message: SentMessage, text: str) -> None:
        """Replace the question and its buttons by the outcome."""
        await api(
            self.client.chat_update(
                channel=message.target.chat_id,
                ts=message.message_id,
                text=text,
                blocks=settled_blocks(text),
            )
        )

    async def delete(self, message: SentMessage) -> None:
        await api(self.client.chat_delete(channel=message.target.chat_id, ts=message.message_id))

    async def typing(self, target: ChatTarget, active: bool) -> None:
        """Assistant threads show a status under the thread; other places have no
        indicator a bot can set."""
        await self._assistant.typing(target, active)

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        channel, _, rest = message_id.partition(":")
        if channel == "command" or not rest:
            return  # a slash command has no message to react to
        name = _EMOJI_NAMES.get(emoji, emoji.strip(":"))
        try:
            await api(
                self.client.reactions_add(channel=channel, timestamp=rest.split(":")[0], name=name)
            )
        except SlackCallFailed as exc:
            if exc.code != "already_reacted":
                raise

    async def rename(self, target: ChatTarget, title: str) -> None:
        await self._assistant.rename(target, title)

    def native_stream(self, target: ChatTarget) -> NativeStream | None:
        if self._streams_ok is False or target.thread_id is None:
            return None

        def on_result(ok: bool) -> None:
            self._streams_ok = ok
            if ok:
                self._assistant.replied(target)

        return SlackStream(self.client, target, self.text_format, on_result=on_result)


def _content(md: str) -> dict[str, Any]:
    """A reply as a markdown block, rendered by Slack like a chat stream, with its
    mrkdwn rendering as the text notifications and older clients show."""
    return {"text": to_slack_mrkdwn(md), "blocks": [{"type": "markdown", "text": md}]}
