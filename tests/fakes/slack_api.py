"""A fake Slack: Web API, Socket Mode websocket and signed HTTP event delivery.

The real slack_sdk / slack_bolt clients talk to it unchanged: pass `fake.api_url` as
`AsyncWebClient(base_url=...)`; `apps.connections.open` hands out a ws:// URL of this same
server, where the fake says `hello` and pushes envelopes. Every Web API call, socket
connection and envelope ack updates the recorded state and wakes `wait_for`, so a test
waits on a condition with a timeout instead of sleeping. What a user would see (messages
with their current text, reactions, assistant status, titles, suggested prompts) is kept
per channel and thread as frozen records replaced on every change.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

_T = TypeVar("_T")
ChannelKind = Literal["im", "channel", "group"]
Json = dict[str, Any]
_JSON_FIELDS = frozenset({"blocks", "attachments", "prompts", "chunks", "metadata"})
_VISIBLE_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "bot_message"})
_STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
TEXT_LIMIT = 40000


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiCall:
    """One Web API request as the fake received and answered it."""

    method: str
    args: Json
    token: str | None
    status: int
    response: Json
    at: float

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackMessage:
    """A message as a user sees it now (after updates, stream appends and reactions)."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    user: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    blocks: tuple[Json, ...] = ()
    files: tuple[Json, ...] = ()
    reactions: tuple[tuple[str, str], ...] = ()  # (name, user id), in order added
    metadata: Json | None = None
    streaming: bool = False
    edits: int = 0
    appends: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class AssistantThread:
    """Assistant-thread state set through assistant.threads.* (histories, newest last)."""

    channel: str
    thread_ts: str
    statuses: tuple[str, ...] = ()
    titles: tuple[str, ...] = ()
    suggested_prompts: tuple[Json, ...] = ()
    prompts_title: str | None = None

    @property
    def status(self) -> str:
        return self.statuses[-1] if self.statuses else ""

    @property
    def title(self) -> str | None:
        return self.titles[-1] if self.titles else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Envelope:
    """A Socket Mode envelope the fake pushed to the app."""

    envelope_id: str
    type: str
    payload: Json
    retry_attempt: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


class _ApiError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def sign_request(signing_secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10].upper()


def _kind_of(channel: str) -> ChannelKind:
    """Slack's id prefixes: D for direct messages, G for private groups, C for channels."""
    if channel.startswith("D"):
        return "im"
    return "group" if channel.startswith("G") else "channel"


def _rich_text(text: str) -> Json:
    section = {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
    return {"type": "rich_text", "block_id": _new_id("b"), "elements": [section]}


def _ts_key(ts: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ts.split("."))


def _arg(args: Json, name: str, error: str = "invalid_arguments") -> str:
    value = args.get(name)
    if value is None or value == "":
        raise _ApiError(error)
    return str(value)


def _dicts(value: Any) -> tuple[Json, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, dict))


def _check_length(text: str) -> None:
    if len(text) > TEXT_LIMIT:
        raise _ApiError("msg_too_long")


def _stream_text(args: Json) -> str:
    chunks = "".join(
        str(chunk.get("text", ""))
        for chunk in _dicts(args.get("chunks"))
        if chunk.get("type") == "markdown_text"
    )
    return str(args.get("markdown_text") or "") + chunks


async def _request_args(request: web.Request) -> Json:
    """Query string, form body and JSON body merged, the way Slack accepts arguments."""
    args: Json = dict(request.query)
    if request.content_type == "application/json":
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        if isinstance(body, dict):
            args.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        args.update({key: value for key, value in form.items() if isinstance(value, str)})
    for key in _JSON_FIELDS & args.keys():
        if isinstance(args[key], str) and args[key][:1] in ("[", "{"):
            args[key] = json.loads(args[key])
    return args


class FakeSlack:
    """Fake Slack server on 127.0.0.1, port 0. `await start()` before use, `stop()` after.

    Identity and tokens are plain attributes: override them on the instance before use."""

    team_id = "T0FAKE0001"
    team_name = "Fake Team"
    team_domain = "fake-team"
    app_id = "A0FAKE0001"
    bot_user_id = "U0FAKEBOT1"
    bot_id = "B0FAKEBOT1"
    bot_name = "agentbot"
    bot_token = "xoxb-1-fake-bot-token"
    app_token = "xapp-1-A0FAKE0001-fake-app-token"
    verification_token = "fake-verification-token"

    def __init__(self) -> None:
        self.supports_streaming = True
        self.socket_close_timeout = 1.0
        self.port = 0
        self.calls: list[ApiCall] = []
        self.envelopes: list[Envelope] = []
        self.acks: dict[str, Json] = {}
        self.socket_received: list[Json] = []
        self.socket_connections = 0
        self.file_downloads: list[str] = []
        self.messages: dict[tuple[str, str], SlackMessage] = {}
        self.deleted: list[tuple[str, str]] = []  # (channel, ts) of chat.delete calls
        self.ephemerals: list[Json] = []  # chat.postEphemeral: what only one user saw
        self.threads: dict[tuple[str, str], AssistantThread] = {}
        self.users: dict[str, Json] = {}
        self.channels: dict[str, Json] = {}
        self._files: dict[str, bytes] = {}
        self._failures: defaultdict[str, deque[_Failure]] = defaultdict(deque)
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._draining: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Event()
        self._last_us = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._methods: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.delete": self._delete_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setTitle": self._set_title,
            "assistant.threads.setSuggestedPrompts": self._set_prompts,
            "conversations.replies": self._replies,
            "conversations.info": self._conversation_info,
            "reactions.add": lambda args: self._react(args, add=True),
            "reactions.remove": lambda args: self._react(args, add=False),
            "users.info": self._user_info,
            "apps.connections.open": self._connections_open,
        }

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_get("/files-pri/{file_key}/{name:.*}", self._handle_file)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("FakeSlack is not started: await fake.start() first.")
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # -- waiting and inspection --------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # `timeout=` parameters (ASYNC109) are deliberate: every wait in a test is bounded by
    # default, without each caller wrapping it in asyncio.timeout.
    async def wait_for(self, predicate: Callable[[], _T | None], timeout: float = 5.0) -> _T:
        """Return the predicate's first truthy value, re-checked after every change."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    value = predicate()
                    if value:
                        return value
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(f"FakeSlack: condition not met within {timeout}s") from None

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    def transcript(self, channel: str, thread_ts: str | None = None) -> list[SlackMessage]:
        """Messages in a channel (or one thread: its parent and replies), oldest first."""
        found = [
            msg
            for msg in self.messages.values()
            if msg.channel == channel
            and (thread_ts is None or thread_ts in (msg.ts, msg.thread_ts))
        ]
        return sorted(found, key=lambda msg: _ts_key(msg.ts))

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[SlackMessage]:
        return [msg for msg in self.transcript(channel, thread_ts) if msg.bot_id == self.bot_id]

    def thread(self, channel: str, thread_ts: str) -> AssistantThread:
        key = (channel, thread_ts)
        return self.threads.get(key, AssistantThread(channel=channel, thread_ts=thread_ts))

    @property
    def connected(self) -> bool:
        return self._live_socket() is not None

    # -- setup -------------------------------------------------------------------------

    def next_ts(self) -> str:
        """A unique, increasing Slack timestamp (seconds.microseconds)."""
        self._last_us = max(time.time_ns() // 1000, self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        is_bot: bool = False,
    ) -> Json:
        name = name or user_id.lower()
        profile = {"real_name": real_name or name, "display_name": name}
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name or name,
            "is_bot": is_bot,
            "profile": profile,
        }
        self.users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        *,
        kind: ChannelKind = "channel",
        name: str | None = None,
        user: str | None = None,
    ) -> Json:
        info: Json = {
            "id": channel_id,
            "created": int(time.time()),
            "is_archived": False,
            "is_im": kind == "im",
            "is_channel": kind == "channel",
            "is_group": kind == "group",
            "is_private": kind != "channel",
            "is_mpim": False,
            "context_team_id": self.team_id,
        }
        if kind == "im":
            info["user"] = user
        else:
            info.update(name=name or channel_id.lower(), is_member=True)
        self.channels[channel_id] = info
        return info

    def add_file(self, name: str, content: bytes, *, mimetype: str = "text/plain") -> Json:
        """Host a file the bot can download with its token; returns Slack's file object."""
        file_id = _new_id("F")
        self._files[file_id] = content
        private = f"{self.base_url}/files-pri/{self.team_id}-{file_id}"
        return {
            "id": file_id,
            "created": int(time.time()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(content),
            "mode": "hosted",
            "is_external": False,
            "url_private": f"{private}/{name}",
            "url_private_download": f"{private}/download/{name}",
        }

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        retry_after: int = 1,
        status: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail; `ratelimited` answers HTTP 429."""
        limited = error == "ratelimited"
        failure = _Failure(
            error=error,
            status=status if status is not None else (429 if limited else 200),
            retry_after=retry_after if limited else None,
        )
        self._failures[method].extend([failure] * times)

    # -- event builders ----------------------------------------------------------------

    def _register(self, channel: str, kind: ChannelKind, user: str | None) -> None:
        if user is not None and user not in self.users:
            self.add_user(user)
        if channel not in self.channels:
            self.add_channel(channel, kind=kind, user=user)

    def message_event(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: ChannelKind = "im",
        files: list[Json] | None = None,
    ) -> Json:
        """A `message` event as a user's message arrives (im, public or private channel)."""
        self._register(channel, channel_type, user)
        ts = ts or self.next_ts()
        block = _rich_text(text)
        event: Json = {
            "client_msg_id": str(uuid.uuid4()),
            "type": "message",
            "text": text,
            "user": user,
            "ts": ts,
            "blocks": [block],
            "team": self.team_id,
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type,
        }
        if thread_ts is not None:
            parent = self.messages.get((channel, thread_ts))
            event.update(thread_ts=thread_ts, parent_user_id=parent.user if parent else user)
        if files:
            event.update(subtype="file_share", files=files, upload=False)
        return event

    def app_mention_event(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        ts: str | None = None,
        thread_ts: str | None = None,
    ) -> Json:
        """An `app_mention` event; the bot's mention is prefixed when `text` lacks it."""
        mention = f"<@{self.bot_user_id}>"
        text = text if mention in text else f"{mention} {text}"
        event = self.message_event(
            channel, user, text, ts=ts, thread_ts=thread_ts, channel_type="channel"
        )
        del event["channel_type"]
        event["type"] = "app_mention"
        return event

    def bot_message_event(
        self,
        channel: str,
        text: str,
        *,
        bot_id: str | None = None,
        ts: str | None = None,
        thread_ts: str | None = None,
        subtype: str | None = "bot_message",
        channel_type: ChannelKind = "channel",
    ) -> Json:
        """A message from a bot (this app's own unless `bot_id` says otherwise).

        With `subtype=None` it has the shape of a message the app posted itself through
        chat.postMessage (`user` is the bot user, no subtype)."""
        ts = ts or self.next_ts()
        bot_id = bot_id or self.bot_id
        event: Json = {
            "type": "message",
            "text": text,
            "ts": ts,
            "bot_id": bot_id,
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type,
        }
        if subtype is None and bot_id == self.bot_id:
            event.update(user=self.bot_user_id, app_id=self.app_id, team=self.team_id)
        elif subtype is not None:
            event.update(subtype=subtype, username=self.bot_name)
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        return event

    def assistant_thread_started_event(
        self,
        channel: str,
        user: str,
        thread_ts: str | None = None,
        *,
        context: Json | None = None,
    ) -> Json:
        """`assistant_thread_started`: the user opened a new assistant thread with the app."""
        self._register(channel, "im", user)
        thread = {
            "user_id": user,
            "context": context or {},
            "channel_id": channel,
            "thread_ts": thread_ts or self.next_ts(),
        }
        return {
            "type": "assistant_thread_started",
            "assistant_thread": thread,
            "event_ts": self.next_ts(),
        }

    def event_callback(self, event: Json, *, event_id: str | None = None) -> Json:
        """The Events API body wrapping `event` (pass `event_id` again for a retry)."""
        authorization = {
            "enterprise_id": None,
            "team_id": self.team_id,
            "is_bot": True,
            "user_id": self.bot_user_id,
            "is_enterprise_install": False,
        }
        return {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or _new_id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [authorization],
            "is_ext_shared_channel": False,
            "event_context": "4-" + uuid.uuid4().hex,
        }

    def buttons(self, channel: str, ts: str) -> list[tuple[str, str, str]]:
        """(label, action_id, value) of the buttons on a message, as users see them."""
        msg = self.messages[(channel, ts)]
        return [
            (str(e["text"]["text"]), str(e["action_id"]), str(e.get("value", "")))
            for block in msg.blocks
            if block.get("type") == "actions"
            for e in block.get("elements", [])
            if e.get("type") == "button"
        ]

    def block_actions_payload(self, channel: str, ts: str, *, user: str, action_id: str) -> Json:
        """The ``block_actions`` payload a press on a message's button produces."""
        msg = self.messages[(channel, ts)]
        button = next((b for b in self.buttons(channel, ts) if b[1] == action_id), None)
        if button is None:
            raise ValueError(f"message {ts} has no button {action_id!r}")
        self._register(channel, _kind_of(channel), user)
        block_id = next(b.get("block_id", "") for b in msg.blocks if b.get("type") == "actions")
        return {
            "type": "block_actions",
            "user": {
                "id": user,
                "username": self.users[user]["name"],
                "name": self.users[user]["name"],
                "team_id": self.team_id,
            },
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:12]}",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self.channels[channel].get("name", "directmessage")},
            "message": self._message_json(msg),
            "state": {"values": {}},
            "response_url": f"{self.base_url}/actions/{_new_id('R')}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": button[0]},
                    "value": button[2],
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    async def send_block_action(
        self, channel: str, ts: str, *, user: str, action_id: str, timeout: float = 5.0
    ) -> str:
        """Push an ``interactive`` envelope (Socket Mode) for a button press."""
        envelope = {
            "envelope_id": str(uuid.uuid4()),
            "payload": self.block_actions_payload(channel, ts, user=user, action_id=action_id),
            "type": "interactive",
            "accepts_response_payload": False,
        }
        return await self._send_envelope(envelope, timeout)

    async def deliver_block_action_http(
        self, url: str, channel: str, ts: str, *, user: str, action_id: str, signing_secret: str
    ) -> tuple[int, str]:
        """POST a signed, form-encoded ``payload=`` button press to ``url`` (HTTP mode)."""
        payload = self.block_actions_payload(channel, ts, user=user, action_id=action_id)
        return await self._post_signed(
            url,
            urlencode({"payload": json.dumps(payload)}),
            "application/x-www-form-urlencoded",
            signing_secret=signing_secret,
            bad_signature=False,
            timestamp=None,
        )

    def slash_command_payload(self, command: str, text: str, *, channel: str, user: str) -> Json:
        self._register(channel, _kind_of(channel), user)
        return {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel,
            "channel_name": self.channels[channel].get("name", "directmessage"),
            "user_id": user,
            "user_name": self.users[user]["name"],
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/commands/{_new_id('R')}",
            "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:12]}",
        }

    def record_event(self, event: Json) -> None:
        """Store what the event shows users (send_event and deliver_http call this)."""
        if event.get("type") == "assistant_thread_started":
            thread = event["assistant_thread"]
            channel, thread_ts = thread["channel_id"], thread["thread_ts"]
            root = SlackMessage(
                channel=channel,
                ts=thread_ts,
                text="",
                user=self.bot_user_id,
                subtype="assistant_app_thread",
            )
            self.messages.setdefault((channel, thread_ts), root)
            self.threads.setdefault((channel, thread_ts), self.thread(channel, thread_ts))
        elif event.get("type") in ("message", "app_mention") and (
            event.get("subtype") in _VISIBLE_SUBTYPES
        ):
            msg = SlackMessage(
                channel=event["channel"],
                ts=event["ts"],
                text=event.get("text", ""),
                thread_ts=event.get("thread_ts"),
                user=event.get("user"),
                bot_id=event.get("bot_id"),
                subtype=event.get("subtype"),
                files=_dicts(event.get("files")),
            )
            self.messages.setdefault((msg.channel, msg.ts), msg)
        self._notify()

    # -- Web API -----------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _request_args(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        form_token = args.pop("token", None)
        token = token or (str(form_token) if form_token else None)
        status, body, headers = self._dispatch(method, args, token)
        self.calls.append(
            ApiCall(
                method=method,
                args=args,
                token=token,
                status=status,
                response=body,
                at=time.monotonic(),
            )
        )
        self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _dispatch(
        self, method: str, args: Json, token: str | None
    ) -> tuple[int, Json, dict[str, str]]:
        handler = self._methods.get(method)
        if handler is None or (method in _STREAM_METHODS and not self.supports_streaming):
            return 200, {"ok": False, "error": "unknown_method"}, {}
        auth_error = self._auth_error(method, token)
        if auth_error:
            return 200, {"ok": False, "error": auth_error}, {}
        if self._failures[method]:
            failure = self._failures[method].popleft()
            headers = (
                {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
            )
            return failure.status, {"ok": False, "error": failure.error}, headers
        try:
            return 200, {"ok": True, **handler(args)}, {}
        except _ApiError as exc:
            return 200, {"ok": False, "error": exc.error}, {}

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        wanted, other = (self.bot_token, self.app_token)
        if method == "apps.connections.open":
            wanted, other = other, wanted
        if token == wanted:
            return None
        return "not_allowed_token_type" if token == other else "invalid_auth"

    def _auth_test(self, args: Json) -> Json:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _message_json(self, msg: SlackMessage) -> Json:
        out: Json = {"type": "message", "ts": msg.ts, "text": msg.text, "team": self.team_id}
        optional = {
            "user": msg.user,
            "bot_id": msg.bot_id,
            "thread_ts": msg.thread_ts,
            "subtype": msg.subtype,
        }
        out.update({key: value for key, value in optional.items() if value is not None})
        if msg.bot_id == self.bot_id:
            out["app_id"] = self.app_id
        if msg.blocks or msg.text:
            # Slack renders plain text into a rich_text block; bolt's assistant store reads it.
            out["blocks"] = list(msg.blocks) or [_rich_text(msg.text)]
        if msg.metadata is not None:
            out["metadata"] = msg.metadata
        if msg.files:
            out["files"] = list(msg.files)
        if msg.reactions:
            out["reactions"] = [
                {"name": name, "users": users, "count": len(users)}
                for name, users in self._reaction_groups(msg).items()
            ]
        return out

    @staticmethod
    def _reaction_groups(msg: SlackMessage) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for name, user in msg.reactions:
            groups.setdefault(name, []).append(user)
        return groups

    def _put(self, msg: SlackMessage) -> SlackMessage:
        self.messages[(msg.channel, msg.ts)] = msg
        return msg

    def _new_bot_message(
        self, channel: str, text: str, thread_ts: str | None, **extra: Any
    ) -> SlackMessage:
        self._register(channel, _kind_of(channel), None)
        return self._put(
            SlackMessage(
                channel=channel,
                ts=self.next_ts(),
                text=text,
                thread_ts=thread_ts,
                user=self.bot_user_id,
                bot_id=self.bot_id,
                **extra,
            )
        )

    def _find(self, args: Json, ts_key: str = "ts") -> SlackMessage:
        channel = _arg(args, "channel", "channel_not_found")
        msg = self.messages.get((channel, _arg(args, ts_key, "message_not_found")))
        if msg is None:
            raise _ApiError("message_not_found")
        return msg

    def _post_ephemeral(self, args: Json) -> Json:
        channel = _arg(args, "channel", "channel_not_found")
        user = _arg(args, "user", "user_not_in_channel")
        text = str(args.get("text") or "")
        if not text and not args.get("blocks"):
            raise _ApiError("no_text")
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        self.ephemerals.append(
            {"channel": channel, "user": user, "text": text, "thread_ts": thread_ts}
        )
        self._notify()
        return {"message_ts": f"{time.time():.6f}"}

    def _post_message(self, args: Json) -> Json:
        channel = _arg(args, "channel", "channel_not_found")
        text = str(args.get("text") or "")
        blocks = _dicts(args.get("blocks"))
        if not text and not blocks and not args.get("attachments"):
            raise _ApiError("no_text")
        _check_length(text)
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        metadata = args["metadata"] if isinstance(args.get("metadata"), dict) else None
        msg = self._new_bot_message(channel, text, thread_ts, blocks=blocks, metadata=metadata)
        return {"channel": channel, "ts": msg.ts, "message": self._message_json(msg)}

    def _update_message(self, args: Json) -> Json:
        msg = self._find(args)
        if msg.bot_id != self.bot_id:
            raise _ApiError("cant_update_message")
        if args.get("text") is None and args.get("blocks") is None:
            raise _ApiError("no_text")
        text = msg.text if args.get("text") is None else str(args["text"])
        _check_length(text)
        blocks = msg.blocks if args.get("blocks") is None else _dicts(args["blocks"])
        metadata = args["metadata"] if isinstance(args.get("metadata"), dict) else msg.metadata
        msg = self._put(
            replace(msg, text=text, blocks=blocks, metadata=metadata, edits=msg.edits + 1)
        )
        return {
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": self._message_json(msg),
        }

    def _delete_message(self, args: Json) -> Json:
        msg = self._find(args)
        if msg.bot_id != self.bot_id:
            raise _ApiError("cant_delete_message")
        del self.messages[(msg.channel, msg.ts)]
        self.deleted.append((msg.channel, msg.ts))
        return {"channel": msg.channel, "ts": msg.ts}

    def _start_stream(self, args: Json) -> Json:
        channel = _arg(args, "channel", "channel_not_found")
        thread_ts = _arg(args, "thread_ts")
        text = _stream_text(args)
        _check_length(text)
        msg = self._new_bot_message(channel, text, thread_ts, streaming=True)
        return {"channel": channel, "ts": msg.ts}

    def _streaming_message(self, args: Json) -> SlackMessage:
        msg = self._find(args)
        if not msg.streaming:
            raise _ApiError("message_not_in_streaming_state")
        return msg

    def _append_stream(self, args: Json) -> Json:
        msg = self._streaming_message(args)
        delta = _stream_text(args)
        if not delta:
            raise _ApiError("invalid_arguments")
        _check_length(msg.text + delta)
        msg = self._put(replace(msg, text=msg.text + delta, appends=msg.appends + 1))
        return {"channel": msg.channel, "ts": msg.ts}

    def _stop_stream(self, args: Json) -> Json:
        msg = self._streaming_message(args)
        text = msg.text + _stream_text(args)
        _check_length(text)
        blocks = _dicts(args.get("blocks")) or msg.blocks
        metadata = args["metadata"] if isinstance(args.get("metadata"), dict) else msg.metadata
        msg = self._put(replace(msg, text=text, blocks=blocks, metadata=metadata, streaming=False))
        return {"channel": msg.channel, "ts": msg.ts, "message": self._message_json(msg)}

    def _thread_for(self, args: Json) -> AssistantThread:
        channel = _arg(args, "channel_id", "channel_not_found")
        return self.thread(channel, _arg(args, "thread_ts"))

    def _put_thread(self, state: AssistantThread) -> Json:
        self.threads[(state.channel, state.thread_ts)] = state
        return {}

    def _set_status(self, args: Json) -> Json:
        if "status" not in args:
            raise _ApiError("invalid_arguments")
        state = self._thread_for(args)
        return self._put_thread(replace(state, statuses=(*state.statuses, str(args["status"]))))

    def _set_title(self, args: Json) -> Json:
        state = self._thread_for(args)
        return self._put_thread(replace(state, titles=(*state.titles, _arg(args, "title"))))

    def _set_prompts(self, args: Json) -> Json:
        state = self._thread_for(args)
        prompts = _dicts(args.get("prompts"))
        if not prompts or any(not ({"title", "message"} <= prompt.keys()) for prompt in prompts):
            raise _ApiError("invalid_arguments")
        title = str(args["title"]) if args.get("title") else None
        return self._put_thread(replace(state, suggested_prompts=prompts, prompts_title=title))

    def _replies(self, args: Json) -> Json:
        channel = _arg(args, "channel", "channel_not_found")
        ts = _arg(args, "ts", "thread_not_found")
        if (channel, ts) not in self.messages:
            raise _ApiError("thread_not_found")
        thread = self.transcript(channel, ts)
        out = [self._message_json(msg) for msg in thread]
        if len(thread) > 1:
            replies = thread[1:]
            out[0].update(
                thread_ts=ts,
                reply_count=len(replies),
                reply_users=sorted({msg.user for msg in replies if msg.user}),
                latest_reply=replies[-1].ts,
            )
        return {"messages": out, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _conversation_info(self, args: Json) -> Json:
        channel = self.channels.get(_arg(args, "channel", "channel_not_found"))
        if channel is None:
            raise _ApiError("channel_not_found")
        return {"channel": channel}

    def _user_info(self, args: Json) -> Json:
        user_id = _arg(args, "user", "user_not_found")
        if user_id == self.bot_user_id and user_id not in self.users:
            self.add_user(user_id, name=self.bot_name, is_bot=True)
        user = self.users.get(user_id)
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user}

    def _react(self, args: Json, *, add: bool) -> Json:
        msg = self._find(args, "timestamp")
        entry = (_arg(args, "name", "invalid_name"), self.bot_user_id)
        if add and entry in msg.reactions:
            raise _ApiError("already_reacted")
        if not add and entry not in msg.reactions:
            raise _ApiError("no_reaction")
        kept = tuple(reaction for reaction in msg.reactions if reaction != entry)
        self._put(replace(msg, reactions=(*kept, entry) if add else kept))
        return {}

    def _connections_open(self, args: Json) -> Json:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        ws_url = self.base_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_url}/link/?ticket={ticket}&app_id={self.app_id}"}

    async def _handle_file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_key"].removeprefix(f"{self.team_id}-")
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            return web.Response(status=403, text="missing or wrong bot token")
        if file_id not in self._files:
            return web.Response(status=404)
        self.file_downloads.append(file_id)
        self._notify()
        return web.Response(body=self._files[file_id])

    # -- Socket Mode -------------------------------------------------------------------

    def _live_socket(self) -> web.WebSocketResponse | None:
        live = [ws for ws in self._sockets if not ws.closed and ws not in self._draining]
        return live[-1] if live else None

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(timeout=self.socket_close_timeout)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connections += 1
        hello = {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_json(hello)
        self._notify()
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_socket_text(frame.data)
        finally:
            self._sockets.remove(ws)
            self._draining.discard(ws)
            self._notify()
        return ws

    def _on_socket_text(self, data: str) -> None:
        message = json.loads(data)
        if isinstance(message, dict):
            self.socket_received.append(message)
            if "envelope_id" in message:
                self.acks[str(message["envelope_id"])] = message
        self._notify()

    async def _send_envelope(self, envelope: Json, wait: float) -> str:
        ws = await self.wait_for(self._live_socket, wait)
        await ws.send_json(envelope)
        self.envelopes.append(
            Envelope(
                envelope_id=envelope["envelope_id"],
                type=envelope["type"],
                payload=envelope["payload"],
                retry_attempt=envelope.get("retry_attempt") or 0,
            )
        )
        self._notify()
        return str(envelope["envelope_id"])

    async def send_event(
        self,
        event: Json,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        event_id: str | None = None,
        timeout: float = 5.0,
    ) -> str:
        """Push an `events_api` envelope to the newest live connection; returns its id."""
        self.record_event(event)
        envelope = {
            "envelope_id": str(uuid.uuid4()),
            "payload": self.event_callback(event, event_id=event_id),
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        return await self._send_envelope(envelope, timeout)

    async def send_slash_command(
        self,
        command: str,
        text: str = "",
        *,
        channel: str,
        user: str,
        timeout: float = 5.0,
    ) -> str:
        envelope = {
            "envelope_id": str(uuid.uuid4()),
            "payload": self.slash_command_payload(command, text, channel=channel, user=user),
            "type": "slash_commands",
            "accepts_response_payload": True,
        }
        return await self._send_envelope(envelope, timeout)

    def acked(self, envelope_id: str) -> bool:
        return envelope_id in self.acks

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Json:
        """The app's ack message (`{"envelope_id": ..., "payload"?: ...}`)."""
        return await self.wait_for(lambda: self.acks.get(envelope_id), timeout)

    async def disconnect_socket(
        self, *, reason: str = "refresh_requested", message: bool = True, close: bool = False
    ) -> None:
        """Ask live connections to reconnect (`disconnect` message) and/or close them."""
        for ws in [ws for ws in self._sockets if not ws.closed]:
            self._draining.add(ws)
            if message:
                await ws.send_json(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
                )
            if close:
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=reason.encode())
        self._notify()

    # -- HTTP mode ---------------------------------------------------------------------

    async def _post_signed(
        self,
        url: str,
        body: str,
        content_type: str,
        *,
        signing_secret: str,
        bad_signature: bool,
        timestamp: int | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        if self._session is None:
            raise RuntimeError("FakeSlack is not started: await fake.start() first.")
        ts = str(int(time.time()) if timestamp is None else timestamp)
        secret = signing_secret + "-wrong" if bad_signature else signing_secret
        all_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign_request(secret, ts, body),
            **(headers or {}),
        }
        async with self._session.post(url, data=body.encode(), headers=all_headers) as resp:
            return resp.status, await resp.text()

    async def deliver_http(
        self,
        url: str,
        event: Json,
        *,
        signing_secret: str,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        bad_signature: bool = False,
        timestamp: int | None = None,
        event_id: str | None = None,
    ) -> tuple[int, str]:
        """POST a signed event callback to `url`; returns (HTTP status, body text)."""
        self.record_event(event)
        body = json.dumps(self.event_callback(event, event_id=event_id))
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        return await self._post_signed(
            url,
            body,
            "application/json",
            signing_secret=signing_secret,
            bad_signature=bad_signature,
            timestamp=timestamp,
            headers=headers,
        )

    async def deliver_url_verification(
        self, url: str, *, signing_secret: str, challenge: str = "", bad_signature: bool = False
    ) -> tuple[int, str]:
        payload = {
            "token": self.verification_token,
            "challenge": challenge or uuid.uuid4().hex,
            "type": "url_verification",
        }
        return await self._post_signed(
            url,
            json.dumps(payload),
            "application/json",
            signing_secret=signing_secret,
            bad_signature=bad_signature,
            timestamp=None,
        )

    async def deliver_slash_command_http(
        self,
        url: str,
        command: str,
        text: str = "",
        *,
        channel: str,
        user: str,
        signing_secret: str,
        bad_signature: bool = False,
        timestamp: int | None = None,
    ) -> tuple[int, str]:
        """POST a signed, form-encoded slash command to `url`."""
        body = urlencode(self.slash_command_payload(command, text, channel=channel, user=user))
        return await self._post_signed(
            url,
            body,
            "application/x-www-form-urlencoded",
            signing_secret=signing_secret,
            bad_signature=bad_signature,
            timestamp=timestamp,
        )
