"""The Discord adapter (discord.py's ``Client`` with an app-command tree).

How the pieces interact. ``run`` builds a fresh ``_Client`` per attempt, points discord.py
at the configured REST base and gateway, and serves ``client.start`` until cancelled;
discord.py itself resumes and reconnects with backoff, and its ready / resumed /
disconnect events drive ``state``. discord.py runs every event handler as its own task,
so each handler first takes its channel's lane (a FIFO lock) to keep a channel's
messages in order. A guild message that addresses the bot (or any, with respond =
"all") gets a public thread created from it; the thread is then owned (in memory and in
storage, so after a restart too) and later messages there need no mention.
``discord_inbound`` does the pure conversion. Slash commands are deferred at once and
forwarded as text; the pipeline's reply becomes the deferred response (``send`` looks
for ``extra['interaction']``). Library exceptions become ``adapters.errors`` in
``_delivery_errors`` and in ``run`` only.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import warnings
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import yarl
from aiohttp import web

from adapters.base import (
    AdapterState,
    ChatTarget,
    InboundSink,
    NativeStream,
    SentMessage,
    StatusTracker,
)
from adapters.discord.inbound import (
    PLATFORM,
    BotIdentity,
    Place,
    attachment_note,
    channel_place,
    clean_text,
    dm_place,
    interaction_to_inbound,
    is_chat_message,
    is_command,
    is_from_bot,
    mentions_bot,
    slash_commands,
    split_attachments,
    thread_name,
    thread_place,
    to_inbound,
)
from adapters.errors import (
    ConnectionLost,
    CredentialsRejected,
    DeliveryError,
    MessageTooLong,
    NotAllowed,
    RateLimited,
)
from runtime.agent_runtime import AgentRuntime
from runtime.errors import AgentRuntimeError
from adapters.text.discord_md import to_discord
from adapters.text.format import TextFormat
from runtime.history import Image
from runtime.storage.base import Storage

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http
    from discord import app_commands

log = logging.getLogger(__name__)

DEFAULT_API_BASE: Final = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL: Final = "wss://gateway.discord.gg"
MAX_TEXT: Final = 2000
NO_REPLY: Final = "(no reply)"
TOKEN_FIX: Final = (
    "Discord refused the bot token: set DISCORD_BOT_TOKEN (adapters.discord.token) to the "
    "token from the Discord developer portal (Bot > Reset Token)"
)
INTENTS_FIX: Final = (
    "Discord refused the gateway intents: enable the Message Content Intent for the bot in "
    "the Discord developer portal (Bot > Privileged Gateway Intents)"
)
_OWNED_REMEMBERED: Final = 100_000


@dataclass(frozen=True, kw_only=True, slots=True)
class DiscordSettings:
    token: str
    api_base: str = DEFAULT_API_BASE
    gateway_url: str = DEFAULT_GATEWAY_URL
    respond_all: bool = False  # guild channels: open a thread for every message
    identify_delay: float = 5.0  # discord.py's pause before each re-IDENTIFY
    guild_ready_timeout: float = 2.0  # how long on_ready waits for further GUILD_CREATEs
    max_ratelimit_timeout: float = 30.0  # longer 429s raise instead of being waited out
    max_download: int = 10 * 1024 * 1024  # larger images become a note


def settings_from(section: Any, **overrides: Any) -> DiscordSettings:
    """Settings from the ``[adapters.discord]`` section (read duck-typed)."""
    token = section.token.get_secret_value() if section.token is not None else ""
    values: dict[str, Any] = {
        "token": token,
        "api_base": section.api_base,
        "gateway_url": section.gateway_url,
        "respond_all": section.respond == "all",
    }
    return DiscordSettings(**(values | overrides))


def from_config(section: Any, runtime: AgentRuntime) -> DiscordAdapter:
    return DiscordAdapter(settings_from(section), storage=runtime.storage)


def gateway_intents() -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = True
    return intents


@contextmanager
def _delivery_errors(action: str) -> Iterator[None]:
    """The one place discord.py's exceptions become ``adapters.errors``."""
    try:
        yield
    except discord.RateLimited as exc:
        raise RateLimited(exc.retry_after) from exc
    except discord.Forbidden as exc:
        raise NotAllowed(f"Discord did not allow {action}: {exc.text or exc.status}") from exc
    except discord.HTTPException as exc:
        if exc.status == 429:
            raise RateLimited(_retry_after(exc)) from exc
        if exc.code == 50035 and "length" in exc.text.lower():
            raise MessageTooLong(f"Discord refused {action}: {exc.text}") from exc
        raise DeliveryError(f"Discord refused {action}: {exc.status} ({exc.code})") from exc
    except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise DeliveryError(f"{action} failed on Discord: {type(exc).__name__}") from exc


def _retry_after(exc: discord.HTTPException) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return float(headers[name])
        except (KeyError, ValueError):
            continue
    return 1.0


@contextmanager
def _endpoints(settings: DiscordSettings) -> Iterator[None]:
    """Point discord.py (class attributes, so process-wide) at the configured servers,
    only when they differ from Discord's own; restore the previous values after."""
    route, socket = discord.http.Route, discord.gateway.DiscordWebSocket
    saved = route.BASE, socket.DEFAULT_GATEWAY
    if settings.api_base.rstrip("/") != DEFAULT_API_BASE:
        route.BASE = settings.api_base.rstrip("/")
    if settings.gateway_url.rstrip("/") != DEFAULT_GATEWAY_URL:
        socket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
    try:
        yield
    finally:
        route.BASE, socket.DEFAULT_GATEWAY = saved


@dataclass(kw_only=True, slots=True)
class _Lane:
    lock: asyncio.Lock
    users: int = 0


class _Lanes:
    """One FIFO lock per channel, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lane = self._lanes.setdefault(key, _Lane(lock=asyncio.Lock()))
        lane.users += 1
        try:
            async with lane.lock:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]


class _Client(discord.Client):
    """discord.py's client with its events and hooks routed to the adapter."""

    def __init__(self, adapter: DiscordAdapter, settings: DiscordSettings) -> None:
        super().__init__(
            intents=gateway_intents(),
            guild_ready_timeout=settings.guild_ready_timeout,
            max_ratelimit_timeout=settings.max_ratelimit_timeout,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self._adapter = adapter
        self._identify_delay = settings.identify_delay
        self.tree: app_commands.CommandTree[_Client] = app_commands.CommandTree(self)
        for command in slash_commands(adapter.on_command):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        await self._adapter.sync_commands(self.tree)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self._identify_delay)

    async def on_ready(self) -> None:
        self._adapter.connected(self)

    async def on_resumed(self) -> None:
        self._adapter.connected(self)

    async def on_disconnect(self) -> None:
        self._adapter.disconnected()

    async def on_message(self, message: discord.Message) -> None:
        await self._adapter.on_message(message)

    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        # Every streamed edit of our own replies comes back here: skip bots' edits early.
        if before.content != after.content and not is_from_bot(after):
            await self._adapter.on_message(after, edited=True)


class DiscordAdapter:
    name = PLATFORM
    text_format = TextFormat(limit=MAX_TEXT, markup=to_discord)

    def __init__(self, settings: DiscordSettings, *, storage: Storage | None = None) -> None:
        self._settings = settings
        self._storage = storage
        self._connection = StatusTracker("discord")
        self._client: _Client | None = None
        self._sink: InboundSink | None = None
        self._lanes = _Lanes()
        self._owned: OrderedDict[int, None] = OrderedDict()
        self._interactions: dict[str, discord.Interaction] = {}
        self._commands_synced = False

    @property
    def state(self) -> AdapterState:
        return self._connection.state

    @property
    def state_detail(self) -> str:
        return self._connection.detail

    @property
    def state_history(self) -> deque[AdapterState]:
        return self._connection.history

    # -- connection ----------------------------------------------------------------------

    async def run(self, sink: InboundSink) -> None:
        self._sink = sink
        if not self._settings.token.strip():
            self._connection.set("failed", TOKEN_FIX)
            raise CredentialsRejected(TOKEN_FIX)
        self._connection.set("starting", "logging in")
        client = _Client(self, self._settings)
        self._client = client
        next_state: AdapterState = "stopped"
        try:
            with _endpoints(self._settings):
                await self._serve(client)
        except CredentialsRejected as exc:
            next_state = "failed"
            self._connection.detail = str(exc)
            raise
        except Exception:
            next_state = "reconnecting"
            raise
        finally:
            self._client = None
            await client.close()
            self._connection.set(
                next_state, self._connection.detail if next_state == "failed" else ""
            )

    async def _serve(self, client: _Client) -> None:
        try:
            await client.start(self._settings.token, reconnect=True)
        except discord.LoginFailure as exc:
            raise CredentialsRejected(TOKEN_FIX) from exc
        except discord.PrivilegedIntentsRequired as exc:
            raise CredentialsRejected(INTENTS_FIX) from exc
        except discord.ConnectionClosed as exc:
            if exc.code == 4004:
                raise CredentialsRejected(TOKEN_FIX) from exc
            msg = f"the Discord gateway closed the connection (code {exc.code})"
            raise ConnectionLost(msg) from exc

    def connected(self, client: discord.Client) -> None:
        name = client.user.name if client.user else "?"
        self._connection.set("connected", f"as {name} in {len(client.guilds)} guild(s)")

    def disconnected(self) -> None:
        if self._connection.state == "connected":
            self._connection.set("reconnecting", "gateway connection lost; discord.py is resuming")

    async def sync_commands(self, tree: app_commands.CommandTree[_Client]) -> None:
        """Register the slash commands once per process; a failure is not fatal."""
        if self._commands_synced:
            return
        try:
            synced = await tree.sync()
        except (discord.DiscordException, aiohttp.ClientError) as exc:
            log.warning(
                "could not register the Discord slash commands (text commands work): %s", exc
            )
            return
        self._commands_synced = True
        log.info("registered %d Discord slash commands", len(synced))

    # -- inbound -------------------------------------------------------------------------

    async def on_message(self, message: discord.Message, *, edited: bool = False) -> None:
        # The lane is taken before any await, so handlers keep the gateway's order.
        async with self._lanes.hold(str(message.channel.id)):
            try:
                await self._handle_message(message, edited=edited)
            except Exception:
                log.exception("handling Discord message %s failed", message.id)

    async def _handle_message(self, message: discord.Message, *, edited: bool) -> None:
        client, sink = self._client, self._sink
        if client is None or client.user is None or sink is None:
            return
        if not is_chat_message(message):
            return
        bot = BotIdentity(id=client.user.id, name=client.user.name)
        text = clean_text(message, bot)
        if text is None:
            log.debug("dropped a command meant for another bot in %s", message.channel.id)
            return
        place, addressed = await self._place(message, text, bot, edited=edited)
        answered = addressed or place.is_direct or self._settings.respond_all
        images: tuple[Image, ...] = ()
        notes = [attachment_note(a) for a in message.attachments]
        if answered and not is_from_bot(message):  # only then is downloading worth it
            wanted, notes = split_attachments(message.attachments, self._settings.max_download)
            images, notes = await self._download(wanted, notes)
        inbound = to_inbound(
            message,
            place,
            text=text,
            addressed=addressed,
            edited=edited,
            images=images,
            notes=notes,
        )
        await sink.handle(inbound)

    async def _place(
        self, message: discord.Message, text: str, bot: BotIdentity, *, edited: bool
    ) -> tuple[Place, bool]:
        """Where the message's conversation lives, and whether it addresses the bot."""
        channel, guild = message.channel, message.guild
        mentioned = mentions_bot(message, bot.id)
        if guild is None:
            return dm_place(message.author.id, channel.id), True
        if isinstance(channel, discord.Thread):
            owned = channel.owner_id == bot.id or await self._owns(channel.id)
            if mentioned and not owned and not is_from_bot(message):
                await self._claim(channel.id)
            place = thread_place(channel.id, parent_id=channel.parent_id, guild_id=guild.id)
            return place, owned or mentioned
        thread_id: int | None = None
        if edited:  # the first message of a thread we opened lives in the parent channel
            thread_id = message.id if await self._owns(message.id) else None
        elif (mentioned or self._settings.respond_all) and not (
            is_from_bot(message) or is_command(text)
        ):
            thread_id = await self._open_thread(message, text)
            mentioned = True  # a thread was wanted: the message is answered either way
        if thread_id is None:
            return channel_place(channel.id, guild_id=guild.id, reply_to=message.id), mentioned
        extra = {"message_channel": str(channel.id)}
        place = thread_place(thread_id, parent_id=channel.id, guild_id=guild.id, extra=extra)
        return place, True

    async def _open_thread(self, message: discord.Message, text: str) -> int | None:
        """A public thread from the message, by id; None (answer in the channel) if refused."""
        existing = message.guild.get_thread(message.id) if message.guild else None
        if existing is not None:  # the message was replayed after a resume
            thread = existing
        else:
            try:
                thread = await message.create_thread(name=thread_name(text))
            except (discord.HTTPException, discord.RateLimited) as exc:
                log.warning("could not open a thread for message %s: %s", message.id, exc)
                return None
        await self._claim(thread.id)
        return thread.id

    async def _owns(self, thread_id: int) -> bool:
        if thread_id in self._owned:
            return True
        if self._storage is None:
            return False
        try:
            bound = await self._storage.get_binding(PLATFORM, str(thread_id))
        except AgentRuntimeError as exc:
            log.warning("could not read the binding of Discord thread %s: %s", thread_id, exc)
            return False
        if bound is not None:
            self._remember(thread_id)
        return bound is not None

    async def _claim(self, thread_id: int) -> None:
        self._remember(thread_id)
        if self._storage is None:
            return
        try:
            await self._storage.bind_thread(
                PLATFORM, str(thread_id), f"{PLATFORM}:thread:{thread_id}"
            )
        except AgentRuntimeError as exc:
            log.warning("could not remember Discord thread %s: %s", thread_id, exc)

    def _remember(self, thread_id: int) -> None:
        self._owned[thread_id] = None
        self._owned.move_to_end(thread_id)
        if len(self._owned) > _OWNED_REMEMBERED:
            self._owned.popitem(last=False)  # storage still knows it

    async def _download(
        self, wanted: Sequence[discord.Attachment], notes: list[str]
    ) -> tuple[tuple[Image, ...], list[str]]:
        images: list[Image] = []
        for attachment in wanted:
            try:
                data = await attachment.read()
            except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("could not download a Discord attachment: %s", type(exc).__name__)
                notes.append(f"{attachment_note(attachment)}, could not be downloaded")
                continue
            media_type = (attachment.content_type or "image/png").split(";")[0].strip()
            encoded = base64.b64encode(data).decode("ascii")
            images.append(Image(media_type=media_type, data_base64=encoded))
        return tuple(images), notes

    async def on_command(self, interaction: discord.Interaction, text: str) -> None:
        """A slash command: acknowledged at once ("thinking"), then forwarded as text."""
        sink, key = self._sink, str(interaction.id)
        if sink is None:
            return
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            log.warning("could not acknowledge Discord interaction %s: %s", key, exc)
            return
        self._interactions[key] = interaction
        try:
            async with self._lanes.hold(str(interaction.channel_id)):
                await sink.handle(interaction_to_inbound(interaction, text))
        finally:
            pending = self._interactions.pop(key, None)
        if pending is not None:  # the pipeline said nothing: end the "thinking" state
            try:
                await pending.edit_original_response(content=NO_REPLY)
            except discord.HTTPException as exc:
                log.debug("could not close Discord interaction %s: %s", key, exc)

    # -- outbound ------------------------------------------------------------------------

    def _messageable(self, channel_id: str) -> discord.PartialMessageable:
        client = self._client
        if client is None or client.is_closed():
            raise DeliveryError("Discord is not connected")
        return client.get_partial_messageable(int(channel_id))

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        key = target.extra.get("interaction", "")
        interaction = self._interactions.get(key)
        with _delivery_errors("sending a message"):
            if interaction is not None:  # kept until answered, so a retry answers it too
                try:
                    sent = await interaction.edit_original_response(content=text)
                    self._interactions.pop(key, None)
                    return SentMessage(target=target, message_id=str(sent.id))
                except discord.NotFound:
                    self._interactions.pop(key, None)
                    log.debug("interaction %s expired; replying in the channel", key)
            channel = self._messageable(target.chat_id)
            if target.reply_to is None:
                message = await channel.send(text)
            else:
                original = channel.get_partial_message(int(target.reply_to))
                reference = original.to_reference(fail_if_not_exists=False)
                message = await channel.send(text, reference=reference, mention_author=False)
        return SentMessage(target=target, message_id=str(message.id))

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        with _delivery_errors("editing a message"):
            channel = self._messageable(message.target.chat_id)
            await channel.get_partial_message(int(message.message_id)).edit(content=text)

    async def delete(self, message: SentMessage) -> None:
        with _delivery_errors("deleting a message"):
            channel = self._messageable(message.target.chat_id)
            await channel.get_partial_message(int(message.message_id)).delete()

    async def typing(self, target: ChatTarget, active: bool) -> None:
        if not active:
            return  # Discord's indicator lapses on its own (or with the next message)
        with _delivery_errors("showing typing"):
            await self._messageable(target.chat_id).typing()

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        channel_id = target.extra.get("message_channel", target.chat_id)
        raw_id = int(message_id.split(":", 1)[0])  # an edit's id carries a suffix
        with _delivery_errors("adding a reaction"):
            await self._messageable(channel_id).get_partial_message(raw_id).add_reaction(emoji)

    async def rename(self, target: ChatTarget, title: str) -> None:
        name = title.strip()[:100]
        if target.thread_id is None or not name:
            return  # only threads have names to change
        client = self._client
        if client is None:
            raise DeliveryError("Discord is not connected")
        with _delivery_errors("renaming a thread"):
            thread_id = int(target.thread_id)
            channel = client.get_channel(thread_id) or await client.fetch_channel(thread_id)
            if isinstance(channel, discord.Thread) and channel.name != name:
                await channel.edit(name=name)

    def native_stream(self, target: ChatTarget) -> NativeStream | None:
        return None

    def web_routes(self) -> Sequence[web.RouteDef]:
        return ()
