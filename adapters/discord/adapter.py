"""The Discord adapter (discord.py's ``Client`` with an app-command tree).

How the pieces interact. ``run`` builds a fresh ``AdapterClient`` (``discord/client.py``)
per attempt, points discord.py at the configured REST base and gateway, and serves
``client.start`` until cancelled; discord.py itself resumes and reconnects with backoff,
and its ready / resumed / disconnect events drive ``state``. Each message is handed to
the gateway, whose per-chat lanes keep a channel's messages in order. A guild message
that addresses the bot (or any, with respond = "all") from a user the access policy
allows gets a public thread created from it; the thread is then owned (in memory and in
storage, so after a restart too) and later messages there need no mention.
``discord_inbound`` does the pure conversion. Slash commands are deferred at once and
forwarded as text; the pipeline's reply becomes the deferred response (``send`` looks
for ``extra['interaction']``, which ``discord/interactions.py`` keeps). Library
exceptions become ``adapters.errors`` in ``client.delivery_errors`` and in ``run`` only.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import aiohttp
from aiohttp import web

from adapters.approval import ApprovalPrompt
from adapters.base import (
    AdapterState,
    ChatTarget,
    InboundSink,
    Media,
    NativeStream,
    SentMessage,
    StatusReporting,
    StatusTracker,
)
from adapters.common.endpoints import DISCORD_API_BASE, DISCORD_GATEWAY_URL
from adapters.common.identity import BotIdentity
from adapters.common.memory import ThreadOwnership
from adapters.common.sizes import MAX_DOWNLOAD
from adapters.discord.approval import ApprovalView
from adapters.discord.client import (
    INTENTS_FIX,
    TOKEN_FIX,
    AdapterClient,
    delivery_errors,
    endpoints,
)
from adapters.discord.inbound import (
    PLATFORM,
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
    split_attachments,
    thread_name,
    thread_place,
    to_inbound,
)
from adapters.discord.interactions import Interactions
from adapters.discord.media import download
from adapters.errors import (
    ConnectionLost,
    CredentialsRejected,
    DeliveryError,
)
from adapters.text.discord_md import to_discord
from adapters.text.format import TextFormat
from runtime.storage.base import Storage

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http
    from discord import app_commands

log = logging.getLogger(__name__)

MAX_TEXT: Final = 2000
_OWNED_REMEMBERED: Final = 100_000


@dataclass(frozen=True, kw_only=True, slots=True)
class DiscordSettings:
    token: str
    api_base: str = DISCORD_API_BASE
    gateway_url: str = DISCORD_GATEWAY_URL
    respond_all: bool = False  # guild channels: open a thread for every message
    identify_delay: float = 5.0  # discord.py's pause before each re-IDENTIFY
    guild_ready_timeout: float = 2.0  # how long on_ready waits for further GUILD_CREATEs
    max_ratelimit_timeout: float = 30.0  # longer 429s raise instead of being waited out
    max_download: int = MAX_DOWNLOAD  # larger images become a note
    # The gateway's access policy, consulted before any side effect (opening or
    # claiming a thread); the refusal itself is the gateway's reply.
    access: Literal["open", "allowlist"] = "open"
    allowed_users: frozenset[str] = frozenset()

    def allows(self, user_id: str) -> bool:
        return self.access == "open" or user_id in self.allowed_users


class DiscordAdapter(StatusReporting):
    name = PLATFORM
    text_format = TextFormat(limit=MAX_TEXT, markup=to_discord)

    def __init__(self, settings: DiscordSettings, *, storage: Storage | None = None) -> None:
        self._settings = settings
        self._storage = storage
        self._connection = StatusTracker("discord")
        self._client: AdapterClient | None = None
        self._sink: InboundSink | None = None
        self._threads = ThreadOwnership(PLATFORM, storage, size=_OWNED_REMEMBERED)
        self._interactions = Interactions()
        self._commands_synced = False

    # -- connection ----------------------------------------------------------------------

    async def run(self, sink: InboundSink) -> None:
        self._sink = sink
        if not self._settings.token.strip():
            self._connection.set("failed", TOKEN_FIX)
            raise CredentialsRejected(TOKEN_FIX)
        self._connection.set("starting", "logging in")
        client = AdapterClient(self, self._settings)
        self._client = client
        next_state: AdapterState = "stopped"
        try:
            with endpoints(self._settings):
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

    async def _serve(self, client: AdapterClient) -> None:
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

    async def sync_commands(self, tree: app_commands.CommandTree[AdapterClient]) -> None:
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

    async def stop_intake(self) -> None:
        """Discord has no redelivery: events after this are ignored; the connection stays
        up for replies in flight."""
        self._sink = None

    async def on_message(self, message: discord.Message, *, edited: bool = False) -> None:
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
        bot = BotIdentity(user_id=str(client.user.id), name=client.user.name)
        text = clean_text(message, bot)
        if text is None:
            log.debug("dropped a command meant for another bot in %s", message.channel.id)
            return
        place, addressed = await self._place(message, text, bot, edited=edited)
        answered = addressed or place.is_direct or self._settings.respond_all
        notes = [attachment_note(a) for a in message.attachments]
        inbound = to_inbound(
            message, place, text=text, addressed=addressed, edited=edited, notes=notes
        )
        if answered and not is_from_bot(message) and message.attachments:
            # Only then is downloading worth it; it happens in the message's lane.
            wanted, kept = split_attachments(message.attachments, self._settings.max_download)

            async def fetch() -> Media:
                images, all_notes = await download(wanted, kept)
                return images, tuple(all_notes)

            inbound = dataclasses.replace(inbound, media=fetch)
        await sink.handle(inbound)

    async def _place(
        self, message: discord.Message, text: str, bot: BotIdentity, *, edited: bool
    ) -> tuple[Place, bool]:
        """Where the message's conversation lives, and whether it addresses the bot."""
        channel, guild = message.channel, message.guild
        mentioned = mentions_bot(message, bot.user_id)
        if guild is None:
            return dm_place(message.author.id, channel.id), True
        # Refused users get the gateway's refusal, but no thread opened or claimed first.
        may_bind = not is_from_bot(message) and self._settings.allows(str(message.author.id))
        if isinstance(channel, discord.Thread):
            owned = str(channel.owner_id) == bot.user_id or await self._owns(channel.id)
            if mentioned and not owned and may_bind:
                await self._claim(channel.id)
            place = thread_place(channel.id, parent_id=channel.parent_id, guild_id=guild.id)
            return place, owned or mentioned
        thread_id: int | None = None
        if edited:  # the first message of a thread we opened lives in the parent channel
            thread_id = message.id if await self._owns(message.id) else None
        elif (mentioned or self._settings.respond_all) and may_bind and not is_command(text):
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
        return await self._threads.owns(str(thread_id))

    async def _claim(self, thread_id: int) -> None:
        await self._threads.claim(str(thread_id), f"{PLATFORM}:thread:{thread_id}")

    async def on_command(self, interaction: discord.Interaction, text: str) -> None:
        """A slash command: acknowledged at once ("thinking"), then forwarded as text."""
        sink = self._sink
        if sink is None or not await self._interactions.defer(interaction):
            return
        key = str(interaction.id)
        if not await sink.handle(interaction_to_inbound(interaction, text)):
            self._interactions.close(key)  # not taken at all: end the "thinking" state now
            return
        # The gateway answers from the message's lane; if it never says anything, the
        # "thinking" state ends after a while.
        self._interactions.close_later(key)

    # -- outbound ------------------------------------------------------------------------

    def _messageable(self, channel_id: str) -> discord.PartialMessageable:
        client = self._client
        if client is None or client.is_closed():
            raise DeliveryError("Discord is not connected")
        return client.get_partial_messageable(int(channel_id))

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        with delivery_errors("sending a message"):
            answered = await self._interactions.answer(target.extra.get("interaction", ""), text)
            if answered is not None:
                return SentMessage(target=target, message_id=answered)
            channel = self._messageable(target.chat_id)
            if target.reply_to is None:
                message = await channel.send(text)
            else:
                original = channel.get_partial_message(int(target.reply_to))
                reference = original.to_reference(fail_if_not_exists=False)
                message = await channel.send(text, reference=reference, mention_author=False)
        return SentMessage(target=target, message_id=str(message.id))

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        with delivery_errors("editing a message"):
            channel = self._messageable(message.target.chat_id)
            await channel.get_partial_message(int(message.message_id)).edit(content=text)

    async def ask_approval(self, target: ChatTarget, prompt: ApprovalPrompt) -> SentMessage:
        view = ApprovalView(prompt.request_id, lambda: self._sink)
        with delivery_errors("asking for approval"):
            message = await self._messageable(target.chat_id).send(prompt.text, view=view)
        return SentMessage(target=target, message_id=str(message.id))

    async def settle_approval(self, message: SentMessage, text: str) -> None:
        """Replace the question by its outcome and drop the buttons."""
        with delivery_errors("settling an approval"):
            channel = self._messageable(message.target.chat_id)
            await channel.get_partial_message(int(message.message_id)).edit(content=text, view=None)

    async def delete(self, message: SentMessage) -> None:
        with delivery_errors("deleting a message"):
            channel = self._messageable(message.target.chat_id)
            await channel.get_partial_message(int(message.message_id)).delete()

    async def typing(self, target: ChatTarget, active: bool) -> None:
        if not active:
            return  # Discord's indicator lapses on its own (or with the next message)
        with delivery_errors("showing typing"):
            await self._messageable(target.chat_id).typing()

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        channel_id = target.extra.get("message_channel", target.chat_id)
        raw_id = int(message_id.split(":", 1)[0])  # an edit's id carries a suffix
        with delivery_errors("adding a reaction"):
            await self._messageable(channel_id).get_partial_message(raw_id).add_reaction(emoji)

    async def rename(self, target: ChatTarget, title: str) -> None:
        name = title.strip()[:100]
        if target.thread_id is None or not name:
            return  # only threads have names to change
        client = self._client
        if client is None:
            raise DeliveryError("Discord is not connected")
        with delivery_errors("renaming a thread"):
            thread_id = int(target.thread_id)
            channel = client.get_channel(thread_id) or await client.fetch_channel(thread_id)
            if isinstance(channel, discord.Thread) and channel.name != name:
                await channel.edit(name=name)

    def native_stream(self, target: ChatTarget) -> NativeStream | None:
        return None

    def web_routes(self) -> Sequence[web.RouteDef]:
        return ()
