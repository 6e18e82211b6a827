"""A fake Discord (REST API v10 and websocket gateway) that the real discord.py talks to.

How the pieces interact: the test builds a world (users, guilds, channels) and then plays
the humans through the simulation methods (`user_sends`, `user_runs_command`, ...). Every
change Discord would push goes through `_dispatch`: it is appended to the gateway session's
log with a sequence number and queued on the live connection, whose writer task is the only
one sending frames, so a RESUME can replay what a dropped connection missed. REST handlers
mutate the same world behind one middleware that checks the token, injects faults and
records each call. Every request, frame and change wakes `wait_for`, so tests wait on
conditions, never on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import secrets
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import yarl
from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord.gateway
    import discord.http

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
T = TypeVar("T")

API_PREFIX = "/api/v10"
CONTENT_LIMIT = 2000
THREAD_NAME_LIMIT = 100
DISCORD_EPOCH_MS = 1_420_070_400_000
EVERYONE_PERMISSIONS = "2248473465835073"


class Intents:
    """Gateway intent bits (the subset the fake understands)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


# Discord only delivers an event when the session asked for its intent: (in a guild, in a DM).
_EVENT_INTENTS: dict[str, tuple[int, int]] = {
    "MESSAGE_CREATE": (Intents.GUILD_MESSAGES, Intents.DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (Intents.GUILD_MESSAGES, Intents.DIRECT_MESSAGES),
    "MESSAGE_REACTION_ADD": (Intents.GUILD_MESSAGE_REACTIONS, Intents.DIRECT_MESSAGE_REACTIONS),
    "THREAD_CREATE": (Intents.GUILDS, Intents.GUILDS),
    "THREAD_UPDATE": (Intents.GUILDS, Intents.GUILDS),
    "CHANNEL_CREATE": (Intents.GUILDS, Intents.GUILDS),
    "CHANNEL_UPDATE": (Intents.GUILDS, Intents.GUILDS),
}
_MENTION = re.compile(r"<@!?(\d+)>")
_BODY: web.RequestKey[Any] = web.RequestKey("fake_discord_body")
_FILES: web.RequestKey[list[str]] = web.RequestKey("fake_discord_files")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py parses JSON only when Content-Type is exactly this (no charset suffix).
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


class ApiError(Exception):
    """Raised by a REST handler; the middleware turns it into Discord's error JSON."""

    def __init__(self, status: int, code: int, message: str, errors: JsonDict | None = None):
        super().__init__(message)
        self.status, self.code, self.errors = status, code, errors

    def response(self) -> web.Response:
        body: JsonDict = {"message": str(self), "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return _json(body, self.status)


def _form_error(field_name: str, code: str, message: str) -> ApiError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def _check_length(field_name: str, value: str, limit: int, *, minimum: int = 0) -> None:
    if len(value) > limit:
        msg = f"Must be {limit} or fewer in length."
        raise _form_error(field_name, "BASE_TYPE_MAX_LENGTH", msg)
    if len(value) < minimum:
        msg = f"Must be between {minimum} and {limit} in length."
        raise _form_error(field_name, "BASE_TYPE_BAD_LENGTH", msg)


@dataclass(frozen=True, kw_only=True, slots=True)
class RestCall:
    method: str
    path: str  # relative to /api/v10, percent-decoded
    query: Mapping[str, str]
    json: Any
    status: int


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayFrame:
    op: int
    d: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class Rename:
    channel_id: int
    old_name: str
    new_name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class InteractionCallback:
    interaction_id: int
    token: str
    type: int
    json: JsonDict


@dataclass(frozen=True, kw_only=True, slots=True)
class TranscriptLine:
    """A message as a person looking at the channel sees it now."""

    message_id: int
    author_id: int
    author: str
    content: str
    edited: bool
    reactions: tuple[str, ...]
    thread_name: str | None  # the thread started from this message, under its current name
    reply_to: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeUser:
    id: int
    username: str
    bot: bool = False

    def to_json(self) -> JsonDict:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": None if self.bot else self.username.title(),
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(kw_only=True, slots=True)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    channel_ids: list[int] = field(default_factory=list)
    member_ids: list[int] = field(default_factory=list)


@dataclass(kw_only=True, slots=True)
class FakeChannel:
    id: int
    type: int  # 0 text, 1 DM, 11 public thread, 12 private thread
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    recipient: FakeUser | None = None
    position: int = 0
    archived: bool = False
    locked: bool = False
    created_at: str = field(default_factory=_now_iso)
    message_ids: list[int] = field(default_factory=list)

    @property
    def is_thread(self) -> bool:
        return self.type in (10, 11, 12)

    def to_json(self) -> JsonDict:
        last = str(self.message_ids[-1]) if self.message_ids else None
        data: JsonDict = {"id": str(self.id), "type": self.type, "last_message_id": last}
        data["flags"] = 0
        if self.recipient is not None:
            return data | {"recipients": [self.recipient.to_json()]}
        data |= {"guild_id": str(self.guild_id), "name": self.name, "rate_limit_per_user": 0}
        data["parent_id"] = None if self.parent_id is None else str(self.parent_id)
        if not self.is_thread:
            return data | {"position": self.position, "topic": None, "nsfw": False}
        count = len(self.message_ids)
        metadata: JsonDict = {"archived": self.archived, "locked": self.locked}
        metadata |= {"auto_archive_duration": 1440, "archive_timestamp": self.created_at}
        metadata["create_timestamp"] = self.created_at
        data |= {"owner_id": str(self.owner_id), "thread_metadata": metadata}
        return data | {"message_count": count, "total_message_sent": count, "member_count": 1}


@dataclass(kw_only=True, slots=True)
class FakeMessage:
    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str
    type: int = 0
    flags: int = 0
    webhook_id: int | None = None
    mentions: list[FakeUser] = field(default_factory=list)
    attachments: list[JsonDict] = field(default_factory=list)
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None
    reactions: list[tuple[str, int]] = field(default_factory=list)  # (emoji, user id)
    thread_id: int | None = None
    reply_to: int | None = None
    components: list[JsonDict] = field(default_factory=list)  # action rows of buttons

    def to_json(self) -> JsonDict:
        data: JsonDict = {"id": str(self.id), "channel_id": str(self.channel_id)}
        if self.reply_to is not None:
            data["message_reference"] = {"message_id": str(self.reply_to), "type": 0}
            data["message_reference"]["channel_id"] = str(self.channel_id)
        data |= {"author": self.author.to_json(), "content": self.content, "type": self.type}
        data |= {"timestamp": self.timestamp, "edited_timestamp": self.edited_timestamp}
        data |= {"tts": False, "mention_everyone": False, "mention_roles": [], "pinned": False}
        data |= {"mentions": [u.to_json() for u in self.mentions], "flags": self.flags}
        data |= {"attachments": self.attachments, "embeds": [], "components": self.components}
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        emojis = sorted({emoji for emoji, _ in self.reactions})
        if emojis:
            data["reactions"] = [_reaction_json(e, self.reactions) for e in emojis]
        return data


def _emoji_json(emoji: str) -> JsonDict:
    name, _, emoji_id = emoji.partition(":")
    return {"id": emoji_id or None, "name": name}


def _reaction_json(emoji: str, reactions: list[tuple[str, int]]) -> JsonDict:
    count = sum(1 for e, _ in reactions if e == emoji)
    return {"emoji": _emoji_json(emoji), "count": count, "me": False, "burst_colors": []}


def _member_json(user: FakeUser, joined_at: str) -> JsonDict:
    return {
        "user": user.to_json(),
        "roles": [],
        "joined_at": joined_at,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
        "premium_since": None,
    }


@dataclass(kw_only=True, slots=True)
class _FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float = 0.1
    global_: bool = False
    via: bool = True
    body: JsonDict | None = None


@dataclass(kw_only=True, slots=True)
class _Session:
    id: str
    intents: int
    seq: int = 0
    log: list[tuple[int, str, JsonDict]] = field(default_factory=list)


@dataclass(kw_only=True, slots=True, eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    zlib_stream: bool
    outbox: asyncio.Queue[JsonDict] = field(default_factory=asyncio.Queue)
    compressor: Any = field(default_factory=zlib.compressobj)
    session: _Session | None = None


class FakeDiscord:
    """In-memory Discord: one bot, its application, guilds, channels, DMs and threads."""

    def __init__(
        self,
        *,
        bot_name: str = "fakebot",
        token: str | None = None,
        heartbeat_interval_ms: int = 41250,
        rename_limit: int = 2,
        rename_window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ids = itertools.count(int(time.time() * 1000 - DISCORD_EPOCH_MS) << 22)
        self.bot = FakeUser(id=self.snowflake(), username=bot_name, bot=True)
        self.application_id = self.snowflake()
        self.app_owner = FakeUser(id=self.snowflake(), username="owner")
        self.token = token  # None accepts any token until reject_token()
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rename_limit, self.rename_window, self._clock = rename_limit, rename_window, clock
        self.users: dict[int, FakeUser] = {self.bot.id: self.bot}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.deleted_messages: list[int] = []
        self.commands: list[JsonDict] = []
        # Records, for assertions.
        self.calls: list[RestCall] = []
        self.frames: list[GatewayFrame] = []
        self.identifies: list[JsonDict] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.renames: list[Rename] = []
        self.interaction_callbacks: list[InteractionCallback] = []
        self.resumes = 0
        self.heartbeat_acks = 0
        self._required_intents = 0
        self._allowed_privileged = Intents.PRIVILEGED
        self._token_rejected = False
        self._fail_rules: list[_FailRule] = []
        self._rename_times: dict[int, list[float]] = {}
        self._interactions: dict[int, JsonDict] = {}
        self._session: _Session | None = None
        self._conn: _Conn | None = None
        self._conns: set[_Conn] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(self._routes())
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for conn in list(self._conns):
            await conn.ws.close(code=1001, message=b"server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this fake, then restore them."""
        route, socket = discord.http.Route, discord.gateway.DiscordWebSocket
        old_base, old_gateway = route.BASE, socket.DEFAULT_GATEWAY
        route.BASE, socket.DEFAULT_GATEWAY = self.api_base, yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            route.BASE, socket.DEFAULT_GATEWAY = old_base, old_gateway

    # -- world building ----------------------------------------------------------------

    def snowflake(self) -> int:
        return next(self._ids)

    def add_user(self, username: str, *, bot: bool = False) -> FakeUser:
        user = FakeUser(id=self.snowflake(), username=username, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self, name: str, *, channels: Sequence[str] = ("general",), members: Sequence[FakeUser] = ()
    ) -> FakeGuild:
        guild = FakeGuild(id=self.snowflake(), name=name, owner_id=self.bot.id)
        guild.member_ids = [self.bot.id, *(u.id for u in members)]
        self.guilds[guild.id] = guild
        for channel_name in channels:
            self.add_text_channel(guild, channel_name, announce=False)
        if self._session is not None:
            self._dispatch("GUILD_CREATE", self._guild_create_json(guild))
        return guild

    def add_text_channel(
        self, guild: FakeGuild, name: str, *, announce: bool = True
    ) -> FakeChannel:
        channel = FakeChannel(id=self.snowflake(), type=0, name=name, guild_id=guild.id)
        channel.position = len(guild.channel_ids)
        guild.channel_ids.append(channel.id)
        self.channels[channel.id] = channel
        if announce:
            self._dispatch("CHANNEL_CREATE", channel.to_json())
        return channel

    def add_thread(
        self,
        parent_id: int,
        name: str,
        *,
        owner: FakeUser | None = None,
        thread_id: int = 0,
        type_: int = 11,
    ) -> FakeChannel:
        """A thread (public by default); dispatches THREAD_CREATE, as when someone starts one."""
        parent = self.channel(parent_id)
        thread = FakeChannel(id=thread_id or self.snowflake(), type=type_, name=name)
        thread.guild_id, thread.parent_id = parent.guild_id, parent.id
        thread.owner_id = (owner or self.bot).id
        self.channels[thread.id] = thread
        data = thread.to_json() | {"newly_created": True}
        if thread.owner_id == self.bot.id:
            data["member"] = {"id": str(thread.id), "user_id": str(self.bot.id), "flags": 0}
            data["member"]["join_timestamp"] = thread.created_at
        self._dispatch("THREAD_CREATE", data)
        return thread

    def open_dm(self, user: FakeUser) -> FakeChannel:
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient == user:
                return channel
        channel = FakeChannel(id=self.snowflake(), type=1, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def channel(self, channel_id: int) -> FakeChannel:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise ApiError(404, 10003, "Unknown Channel") from None

    def message(self, message_id: int) -> FakeMessage:
        try:
            return self.messages[message_id]
        except KeyError:
            raise ApiError(404, 10008, "Unknown Message") from None

    def transcript(self, channel_id: int) -> list[TranscriptLine]:
        lines = []
        for message in (self.messages[i] for i in self.channel(channel_id).message_ids):
            thread = self.channels.get(message.thread_id or 0)
            line = TranscriptLine(
                message_id=message.id,
                author_id=message.author.id,
                author=message.author.username,
                content=message.content,
                edited=message.edited_timestamp is not None,
                reactions=tuple(emoji for emoji, _ in message.reactions),
                thread_name=thread.name if thread else None,
                reply_to=message.reply_to,
            )
            lines.append(line)
        return lines

    def calls_to(self, method: str, path_pattern: str) -> list[RestCall]:
        """Recorded REST calls whose path fully matches the regular expression."""
        pattern = re.compile(path_pattern)
        return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)]

    # -- controls and fault injection --------------------------------------------------

    def require_intents(self, mask: int) -> None:
        """IDENTIFY without all of these bits is closed with 4014."""
        self._required_intents = mask

    def disallow_privileged_intents(self, mask: int = Intents.MESSAGE_CONTENT) -> None:
        """As if these privileged intents were off in the developer portal: asking -> 4014."""
        self._allowed_privileged &= ~mask

    def reject_token(self) -> None:
        """From now on REST answers 401 and IDENTIFY closes with 4004."""
        self._token_rejected = True

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int = 429,
        retry_after: float = 0.1,
        global_: bool = False,
        *,
        via: bool = True,
        times: int = 1,
        body: JsonDict | None = None,
    ) -> None:
        """Answer the next `times` matching calls with `status` (path: regex, full match).

        A 429 carries Discord's JSON and rate-limit headers; `via=False` drops the `Via`
        header, which discord.py reads as a Cloudflare ban rather than a rate limit.
        """
        rule = _FailRule(
            method=method, pattern=re.compile(path_pattern), status=status, times=times
        )
        self._fail_rules.append(rule)
        rule.retry_after, rule.global_, rule.via, rule.body = retry_after, global_, via, body

    # -- waiting -----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Return the predicate's first truthy value, re-checked after every change."""
        try:
            async with asyncio.timeout(timeout):
                while not (result := predicate()):
                    await self._changed.wait()
                return result
        except TimeoutError:
            recent = [(c.method, c.path, c.status) for c in self.calls[-5:]]
            msg = f"condition not met within {timeout}s; last REST calls: {recent}"
            raise TimeoutError(msg) from None

    # -- simulation of people ----------------------------------------------------------

    async def user_sends(
        self,
        channel_id: int,
        author: FakeUser,
        content: str,
        *,
        mentions_bot: bool = False,
        attachments: Sequence[Mapping[str, Any]] | None = None,
    ) -> JsonDict:
        """A person posts a message; returns the MESSAGE_CREATE payload."""
        bot_mention = f"<@{self.bot.id}>"
        if mentions_bot and bot_mention not in content:
            content = f"{bot_mention} {content}"
        files = [self._attachment_json(dict(a)) for a in attachments or ()]
        message = self._new_message(self.channel(channel_id), author, content, attachments=files)
        return self._message_event_json(message)

    async def user_runs_command(
        self,
        channel_id: int,
        user: FakeUser,
        name: str,
        options: Sequence[Mapping[str, Any]] = (),
    ) -> JsonDict:
        """A person runs a slash command; returns the INTERACTION_CREATE payload."""
        channel = self.channel(channel_id)
        command_id = next((c["id"] for c in self.commands if c["name"] == name), None)
        data: JsonDict = {"id": command_id or str(self.snowflake()), "name": name, "type": 1}
        data["options"] = [dict(o) for o in options]
        return self._interact(channel, user, {"type": 2, "data": data})

    def buttons(self, message_id: int) -> list[tuple[str, str]]:
        """(label, custom_id) of every button on a message, as a user sees them."""
        message = self.messages[message_id]
        return [
            (str(c.get("label", "")), str(c.get("custom_id", "")))
            for row in message.components
            for c in row.get("components", [])
            if c.get("type") == 2
        ]

    async def user_presses_button(
        self, message_id: int, user: FakeUser, custom_id: str
    ) -> JsonDict:
        """A person presses a button of a bot message; returns the INTERACTION_CREATE
        payload (a MESSAGE_COMPONENT interaction, answered at its callback URL)."""
        message = self.messages[message_id]
        if custom_id not in [cid for _, cid in self.buttons(message_id)]:
            raise ValueError(f"message {message_id} has no button {custom_id!r}")
        channel = self.channel(message.channel_id)
        kind = {"type": 3, "data": {"custom_id": custom_id, "component_type": 2}}
        return self._interact(channel, user, kind | {"message": message.to_json()})

    def _interact(self, channel: FakeChannel, user: FakeUser, kind: JsonDict) -> JsonDict:
        """An interaction of ``kind`` (its type, data and the like) by ``user`` in
        ``channel``, as Discord sends it; dispatched as INTERACTION_CREATE and kept to be
        answered at its callback URL."""
        interaction: JsonDict = {
            "id": str(self.snowflake()),
            "application_id": str(self.application_id),
            **kind,
            "token": secrets.token_urlsafe(24),
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel.to_json(),
            "locale": "en-US",
            "app_permissions": EVERYONE_PERMISSIONS,
            "entitlements": [],
            "attachment_size_limit": 26_214_400,
        }
        if channel.guild_id is None:
            interaction |= {"user": user.to_json(), "context": 1}
            interaction["authorizing_integration_owners"] = {"1": str(user.id)}
        else:
            member = _member_json(user, channel.created_at) | {"permissions": "0"}
            interaction |= {"guild_id": str(channel.guild_id), "member": member, "context": 0}
            interaction["authorizing_integration_owners"] = {"0": str(channel.guild_id)}
        self._interactions[int(interaction["id"])] = interaction | {"acked": False}
        self._dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def drop_connection(self) -> None:
        """Cut the TCP connection without a close frame; the client should RESUME."""
        conn = self._conn
        if conn is not None and conn.request.transport is not None:
            conn.request.transport.abort()

    async def close_with(self, code: int, reason: str = "") -> None:
        """Close the live gateway connection with this close code."""
        if self._conn is not None:
            await self._conn.ws.close(code=code, message=reason.encode())

    async def invalidate_session(self) -> None:
        """Send INVALID_SESSION (not resumable); the client must IDENTIFY again."""
        conn, self._session = self._conn, None
        if conn is not None:
            conn.outbox.put_nowait({"op": 9, "d": False})

    # -- gateway -----------------------------------------------------------------------

    def _dispatch(self, event: str, data: JsonDict) -> None:
        session = self._session
        if session is not None:
            session.seq += 1
            session.log.append((session.seq, event, data))
            conn = self._conn
            if conn is not None and conn.session is session:
                self._send_event(conn, session.seq, event, data)
        self._notify()

    def _send_event(self, conn: _Conn, seq: int, event: str, data: JsonDict) -> None:
        assert conn.session is not None
        visible = self._visible(event, data, conn.session.intents)
        if visible is not None:
            conn.outbox.put_nowait({"op": 0, "s": seq, "t": event, "d": visible})

    def _visible(self, event: str, data: JsonDict, intents: int) -> JsonDict | None:
        guild_bit, dm_bit = _EVENT_INTENTS.get(event, (0, 0))
        needed = guild_bit if data.get("guild_id") else dm_bit
        if needed and not intents & needed:
            return None
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not intents & Intents.MESSAGE_CONTENT:
            mentioned = any(u["id"] == str(self.bot.id) for u in data.get("mentions", []))
            by_bot = data["author"]["id"] == str(self.bot.id)
            if data.get("guild_id") and not (mentioned or by_bot):
                return data | {"content": "", "embeds": [], "attachments": [], "components": []}
        return data

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        query = dict(request.query)
        self.gateway_queries.append(query)
        conn = _Conn(ws=ws, request=request, zlib_stream=query.get("compress") == "zlib-stream")
        self._conns.add(conn)
        writer = asyncio.create_task(self._write_frames(conn))
        hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["fake-gateway"]}
        conn.outbox.put_nowait({"op": 10, "d": hello})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_frame(conn, json.loads(msg.data))
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._conns.discard(conn)
            if self._conn is conn:
                self._conn = None
            self._notify()
        return ws

    async def _write_frames(self, conn: _Conn) -> None:
        while not conn.ws.closed:
            text = json.dumps(await conn.outbox.get())
            try:
                if conn.zlib_stream:
                    chunk = conn.compressor.compress(text.encode())
                    await conn.ws.send_bytes(chunk + conn.compressor.flush(zlib.Z_SYNC_FLUSH))
                else:
                    await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def _on_frame(self, conn: _Conn, frame: JsonDict) -> None:
        op, data = frame.get("op"), frame.get("d")
        self.frames.append(GatewayFrame(op=int(op or 0), d=data))
        if not isinstance(data, dict):
            data = {}
        self._notify()
        if op == 1:
            self.heartbeat_acks += 1
            conn.outbox.put_nowait({"op": 11})
        elif op == 2:
            await self._identify(conn, data)
        elif op == 6:
            await self._resume(conn, data)
        elif op == 8:
            self._send_member_chunk(data)

    def _token_ok(self, token: str | None) -> bool:
        if self._token_rejected or not token:
            return False
        return self.token is None or token == self.token

    async def _identify(self, conn: _Conn, data: JsonDict) -> None:
        self.identifies.append(data)
        if not self._token_ok(data.get("token")):
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents", 0))
        missing = self._required_intents & ~intents
        if missing or intents & Intents.PRIVILEGED & ~self._allowed_privileged:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = _Session(id=secrets.token_hex(16), intents=intents)
        self._session, self._conn, conn.session = session, conn, session
        application = {"id": str(self.application_id), "flags": 0}
        ready = {"v": 10, "user": self._me_json(), "session_id": session.id}
        ready |= {"resume_gateway_url": self.gateway_url, "application": application}
        ready |= {"guilds": [{"id": str(g), "unavailable": True} for g in self.guilds]}
        ready |= {"private_channels": [], "relationships": [], "presences": []}
        self._dispatch("READY", ready)
        for guild in self.guilds.values():
            self._dispatch("GUILD_CREATE", self._guild_create_json(guild))

    async def _resume(self, conn: _Conn, data: JsonDict) -> None:
        session = self._session
        if session is None or data.get("session_id") != session.id:
            conn.outbox.put_nowait({"op": 9, "d": False})
            return
        if not self._token_ok(data.get("token")):
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.resumes += 1
        self._conn, conn.session = conn, session
        last_seen = int(data.get("seq") or 0)
        for seq, event, payload in session.log:
            if seq > last_seen:
                self._send_event(conn, seq, event, payload)
        self._dispatch("RESUMED", {"_trace": ["fake-gateway"]})

    def _send_member_chunk(self, data: JsonDict) -> None:
        guild = self.guilds.get(int(data["guild_id"]))
        if guild is not None:
            members = [self._guild_member_json(guild, self.users[u]) for u in guild.member_ids]
            chunk = {"guild_id": str(guild.id), "members": members, "nonce": data.get("nonce")}
            self._dispatch("GUILD_MEMBERS_CHUNK", chunk | {"chunk_index": 0, "chunk_count": 1})

    # -- payloads ----------------------------------------------------------------------

    def _me_json(self) -> JsonDict:
        me = self.bot.to_json()
        return me | {"verified": True, "mfa_enabled": False, "flags": 0, "email": None}

    def _guild_member_json(self, guild: FakeGuild, user: FakeUser) -> JsonDict:
        return _member_json(user, self.channels[guild.channel_ids[0]].created_at)

    def _guild_create_json(self, guild: FakeGuild) -> JsonDict:
        everyone = {"id": str(guild.id), "name": "@everyone", "position": 0, "color": 0}
        everyone |= {"permissions": EVERYONE_PERMISSIONS, "hoist": False, "managed": False}
        everyone |= {"mentionable": False, "flags": 0}
        intents = self._session.intents if self._session else 0
        # Without the members intent Discord only sends the bot's own member.
        shown = guild.member_ids if intents & Intents.GUILD_MEMBERS else [self.bot.id]
        in_guild = [c for c in self.channels.values() if c.guild_id == guild.id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(guild.owner_id),
            "unavailable": False,
            "large": False,
            "member_count": len(guild.member_ids),
            "roles": [everyone],
            "emojis": [],
            "stickers": [],
            "features": [],
            "joined_at": _now_iso(),
            "members": [self._guild_member_json(guild, self.users[u]) for u in shown],
            "channels": [c.to_json() for c in in_guild if not c.is_thread],
            "threads": [c.to_json() for c in in_guild if c.is_thread and not c.archived],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _message_event_json(self, message: FakeMessage) -> JsonDict:
        data = message.to_json()
        if message.guild_id is None:
            return data
        guild = self.guilds[message.guild_id]
        data["guild_id"] = str(guild.id)
        if message.webhook_id is None:
            member = self._guild_member_json(guild, message.author)
            data["member"] = {k: v for k, v in member.items() if k != "user"}
        for mention, user in zip(data["mentions"], message.mentions, strict=True):
            mention["member"] = {
                k: v for k, v in self._guild_member_json(guild, user).items() if k != "user"
            }
        return data

    def _attachment_json(self, attachment: JsonDict) -> JsonDict:
        attachment_id = attachment.get("id") or str(self.snowflake())
        filename = attachment.get("filename", "file.txt")
        url = f"https://cdn.discordapp.com/attachments/0/{attachment_id}/{filename}"
        defaults = {"id": attachment_id, "filename": filename, "size": 0, "url": url}
        defaults |= {"proxy_url": url, "content_type": "text/plain"}
        return defaults | attachment

    def _new_message(
        self, channel: FakeChannel, author: FakeUser, content: str, **fields: Any
    ) -> FakeMessage:
        guild_id = channel.guild_id
        mentioned = [self.users[int(i)] for i in _MENTION.findall(content) if int(i) in self.users]
        message = FakeMessage(
            id=self.snowflake(),
            channel_id=channel.id,
            guild_id=guild_id,
            author=author,
            content=content,
            mentions=list(dict.fromkeys(mentioned)),
            **fields,
        )
        self.messages[message.id] = message
        channel.message_ids.append(message.id)
        self._dispatch("MESSAGE_CREATE", self._message_event_json(message))
        return message

    # -- REST plumbing -----------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        api, channel, msg = API_PREFIX, f"{API_PREFIX}/channels/{{cid}}", "messages/{mid}"
        return [
            web.get("/gateway", self._gateway),
            web.get("/gateway/", self._gateway),
            web.get(f"{api}/gateway", self._get_gateway),
            web.get(f"{api}/gateway/bot", self._get_gateway),
            web.get(f"{api}/users/@me", self._get_me),
            web.get(f"{api}/oauth2/applications/@me", self._get_application),
            web.post(f"{api}/users/@me/channels", self._create_dm),
            web.get(channel, self._get_channel),
            web.patch(channel, self._patch_channel),
            web.post(f"{channel}/messages", self._post_message),
            web.patch(f"{channel}/{msg}", self._edit_message),
            web.delete(f"{channel}/{msg}", self._delete_message),
            web.post(f"{channel}/typing", self._typing),
            web.put(f"{channel}/{msg}/reactions/{{emoji}}/@me", self._add_reaction),
            web.post(f"{channel}/{msg}/threads", self._thread_from_message),
            web.post(f"{channel}/threads", self._thread_without_message),
            web.put(f"{api}/applications/{{app}}/commands", self._put_commands),
            web.get(f"{api}/applications/{{app}}/commands", self._get_commands),
            web.post(f"{api}/interactions/{{iid}}/{{token}}/callback", self._callback),
            web.post(f"{api}/webhooks/{{app}}/{{token}}", self._followup),
            web.patch(f"{api}/webhooks/{{app}}/{{token}}/{msg}", self._edit_original),
        ]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        path = request.path[len(API_PREFIX) :]
        request[_BODY] = body = await self._read_body(request)
        response: web.StreamResponse | None = self._injected_failure(request.method, path)
        if response is None and not path.startswith(("/interactions/", "/webhooks/")):
            auth = request.headers.get("Authorization", "")
            if not self._token_ok(auth.removeprefix("Bot ") if auth.startswith("Bot ") else None):
                response = _json({"message": "401: Unauthorized", "code": 0}, 401)
        if response is None:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = exc.response()
            except web.HTTPNotFound:
                response = _json({"message": "404: Not Found", "code": 0}, 404)
        query, status = dict(request.query), response.status
        self.calls.append(
            RestCall(method=request.method, path=path, query=query, json=body, status=status)
        )
        self._notify()
        return response

    async def _read_body(self, request: web.Request) -> Any:
        if request.content_type == "application/json":
            return await request.json()
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            payload = json.loads(str(form.get("payload_json", "{}")))
            files = [v.filename for v in form.values() if isinstance(v, web.FileField)]
            request[_FILES] = files
            return payload
        return None

    def _injected_failure(self, method: str, path: str) -> web.Response | None:
        for rule in self._fail_rules:
            if rule.method == method and rule.pattern.fullmatch(path):
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
                if rule.status == 429:
                    return _rate_limited(rule.retry_after, global_=rule.global_, via=rule.via)
                body = rule.body or {"message": f"{rule.status}: Injected failure", "code": 0}
                return _json(body, rule.status)
        return None

    @staticmethod
    def _body(request: web.Request) -> JsonDict:
        body = request.get(_BODY)
        return body if isinstance(body, dict) else {}

    # -- REST handlers -----------------------------------------------------------------

    async def _get_gateway(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(self._me_json())

    async def _get_application(self, request: web.Request) -> web.Response:
        app: JsonDict = {
            "id": str(self.application_id),
            "name": self.bot.username,
            "description": "",
        }
        app |= {"icon": None, "bot_public": True, "bot_require_code_grant": False}
        app |= {"owner": self.app_owner.to_json(), "verify_key": "0" * 64, "flags": 0}
        app |= {"team": None, "bot": self._me_json(), "interactions_endpoint_url": None}
        return _json(app)

    async def _create_dm(self, request: web.Request) -> web.Response:
        user = self.users.get(int(self._body(request).get("recipient_id", 0)))
        if user is None:
            raise _form_error("recipient_id", "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        return _json(self.open_dm(user).to_json())

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(self.channel(int(request.match_info["cid"])).to_json())

    async def _patch_channel(self, request: web.Request) -> web.Response:
        channel = self.channel(int(request.match_info["cid"]))
        body = self._body(request)
        if "name" in body:
            self._rename(channel, str(body["name"]))
        channel.archived = bool(body.get("archived", channel.archived))
        channel.locked = bool(body.get("locked", channel.locked))
        event = "THREAD_UPDATE" if channel.is_thread else "CHANNEL_UPDATE"
        self._dispatch(event, channel.to_json())
        return _json(channel.to_json())

    def _rename(self, channel: FakeChannel, name: str) -> None:
        _check_length("name", name, THREAD_NAME_LIMIT, minimum=1)
        now = self._clock()
        recent = [t for t in self._rename_times.get(channel.id, []) if now - t < self.rename_window]
        if len(recent) >= self.rename_limit:
            raise _RateLimitedError(recent[0] + self.rename_window - now)
        self._rename_times[channel.id] = [*recent, now]
        self.renames.append(
            Rename(channel_id=channel.id, old_name=channel.name or "", new_name=name)
        )
        channel.name = name

    async def _post_message(self, request: web.Request) -> web.Response:
        channel = self.channel(int(request.match_info["cid"]))
        body = self._body(request)
        content = str(body.get("content") or "")
        _check_length("content", content, CONTENT_LIMIT)
        files = [self._attachment_json({"filename": f}) for f in request.get(_FILES, [])]
        if not content and not files and not body.get("embeds"):
            raise ApiError(400, 50006, "Cannot send an empty message")
        reference = body.get("message_reference") or {}
        reply_to = int(reference["message_id"]) if "message_id" in reference else None
        fields: JsonDict = {
            "attachments": files,
            "reply_to": reply_to,
            "type": 19 if reply_to else 0,
            "components": list(body.get("components") or []),
        }
        return _json(self._new_message(channel, self.bot, content, **fields).to_json())

    async def _edit_message(self, request: web.Request) -> web.Response:
        message = self._message_in(request)
        if message.author != self.bot:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return _json(self._apply_edit(message, self._body(request)).to_json())

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self._message_in(request)
        if message.author != self.bot:
            raise ApiError(403, 50013, "Missing Permissions")
        del self.messages[message.id]
        self.channel(message.channel_id).message_ids.remove(message.id)
        self.deleted_messages.append(message.id)
        self._dispatch(
            "MESSAGE_DELETE", {"id": str(message.id), "channel_id": str(message.channel_id)}
        )
        return web.Response(status=204)

    def _apply_edit(self, message: FakeMessage, body: JsonDict) -> FakeMessage:
        if "content" in body:
            content = str(body["content"] or "")
            _check_length("content", content, CONTENT_LIMIT)
            message.content = content
        if "components" in body:
            message.components = list(body["components"] or [])
        message.flags &= ~128  # an edit ends a deferred interaction's "thinking" state
        message.edited_timestamp = _now_iso()
        self._dispatch("MESSAGE_UPDATE", self._message_event_json(message))
        return message

    def _message_in(self, request: web.Request) -> FakeMessage:
        channel = self.channel(int(request.match_info["cid"]))
        message = self.message(int(request.match_info["mid"]))
        if message.channel_id != channel.id:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def _typing(self, request: web.Request) -> web.Response:
        self.channel(int(request.match_info["cid"]))
        return web.Response(status=204)

    async def _add_reaction(self, request: web.Request) -> web.Response:
        message = self._message_in(request)
        emoji = request.match_info["emoji"]
        if (emoji, self.bot.id) not in message.reactions:
            message.reactions.append((emoji, self.bot.id))
            event: JsonDict = {"user_id": str(self.bot.id), "channel_id": str(message.channel_id)}
            event |= {"message_id": str(message.id), "emoji": _emoji_json(emoji)}
            event |= {"message_author_id": str(message.author.id), "burst": False, "type": 0}
            if message.guild_id is not None:
                event["guild_id"] = str(message.guild_id)
            self._dispatch("MESSAGE_REACTION_ADD", event)
        return web.Response(status=204)

    async def _thread_from_message(self, request: web.Request) -> web.Response:
        message = self._message_in(request)
        if self.channels[message.channel_id].type not in (0, 5):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        if message.thread_id is not None:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        name = str(self._body(request).get("name", ""))
        _check_length("name", name, THREAD_NAME_LIMIT, minimum=1)
        # Discord gives a thread started from a message the message's id.
        thread = self.add_thread(message.channel_id, name, thread_id=message.id)
        message.thread_id = thread.id
        return _json(thread.to_json())

    async def _thread_without_message(self, request: web.Request) -> web.Response:
        parent = self.channel(int(request.match_info["cid"]))
        if parent.type not in (0, 5):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        body = self._body(request)
        name = str(body.get("name", ""))
        _check_length("name", name, THREAD_NAME_LIMIT, minimum=1)
        thread = self.add_thread(parent.id, name, type_=int(body.get("type") or 12))
        return _json(thread.to_json())

    async def _put_commands(self, request: web.Request) -> web.Response:
        body = request.get(_BODY)
        known = {c["name"]: c["id"] for c in self.commands}
        commands = []
        for command in body if isinstance(body, list) else []:
            saved = {"type": 1, "description": "", "options": [], "nsfw": False} | command
            saved |= {"id": known.get(command["name"]) or str(self.snowflake())}
            saved |= {"application_id": str(self.application_id), "version": str(self.snowflake())}
            saved.setdefault("default_member_permissions", None)
            commands.append(saved)
        self.commands = commands
        return _json(commands)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.commands)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self._interactions.get(int(request.match_info["iid"]))
        token = request.match_info["token"]
        if interaction is None or interaction["token"] != token:
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction["acked"]:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = self._body(request)
        kind, data = int(body.get("type", 0)), body.get("data") or {}
        self.interaction_callbacks.append(
            InteractionCallback(
                interaction_id=int(interaction["id"]), token=token, type=kind, json=body
            )
        )
        message = None
        if kind in (4, 5):  # a message now, or "thinking" until the original is edited
            message = self._interaction_message(interaction, str(data.get("content") or ""))
            message.flags = int(data.get("flags") or 0) | (128 if kind == 5 else 0)
            interaction["original_id"] = message.id
        interaction["acked"] = True
        if "with_response" not in request.query:
            return web.Response(status=204)
        result: JsonDict = {
            "id": interaction["id"],
            "type": 2,
            "response_message_loading": kind == 5,
        }
        result["response_message_ephemeral"] = bool(message and message.flags & 64)
        resource: JsonDict = {"type": kind}
        if message is not None:
            result["response_message_id"] = str(message.id)
            resource["message"] = message.to_json()
        return _json({"interaction": result, "resource": resource})

    def _interaction_message(self, interaction: JsonDict, content: str) -> FakeMessage:
        _check_length("content", content, CONTENT_LIMIT)
        channel = self.channel(int(interaction["channel_id"]))
        return self._new_message(
            channel, self.bot, content, type=20, webhook_id=self.application_id
        )

    def _interaction_by_token(self, request: web.Request) -> JsonDict:
        token = request.match_info["token"]
        for interaction in self._interactions.values():
            if interaction["token"] == token:
                return interaction
        raise ApiError(404, 10015, "Unknown Webhook")

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction_by_token(request)
        content = str(self._body(request).get("content") or "")
        return _json(self._interaction_message(interaction, content).to_json())

    async def _edit_original(self, request: web.Request) -> web.Response:
        interaction = self._interaction_by_token(request)
        mid = request.match_info["mid"]
        message_id = interaction.get("original_id", 0) if mid == "@original" else int(mid)
        message = self.message(message_id)
        return _json(self._apply_edit(message, self._body(request)).to_json())


class _RateLimitedError(ApiError):
    def __init__(self, retry_after: float):
        super().__init__(429, 0, "You are being rate limited.")
        self.retry_after = retry_after

    def response(self) -> web.Response:
        return _rate_limited(self.retry_after, global_=False, via=True)


def _rate_limited(retry_after: float, *, global_: bool, via: bool) -> web.Response:
    body: JsonDict = {"message": "You are being rate limited.", "retry_after": retry_after}
    body |= {"global": global_, "code": 0}
    headers = {
        "Retry-After": str(math.ceil(retry_after)),
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}",
        "X-RateLimit-Bucket": "fake-bucket",
        "X-RateLimit-Scope": "global" if global_ else "user",
    }
    if global_:
        headers["X-RateLimit-Global"] = "true"
    if via:
        headers["Via"] = "1.1 google"
    return _json(body, 429, headers)
