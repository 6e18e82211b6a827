"""discord.py's client wired to the adapter, pointed at the configured servers, and
the one place discord.py's exceptions become ``adapters.errors``."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import aiohttp
import yarl

from adapters.common.endpoints import DISCORD_API_BASE, DISCORD_GATEWAY_URL
from adapters.discord.inbound import is_from_bot, slash_commands
from adapters.errors import DeliveryError, MessageTooLong, NotAllowed, RateLimited

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http
    from discord import app_commands

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter, DiscordSettings

TOKEN_FIX: Final = (
    "Discord refused the bot token: set DISCORD_BOT_TOKEN (adapters.discord.token) to the "
    "token from the Discord developer portal (Bot > Reset Token)"
)
INTENTS_FIX: Final = (
    "Discord refused the gateway intents: enable the Message Content Intent for the bot in "
    "the Discord developer portal (Bot > Privileged Gateway Intents)"
)


def gateway_intents() -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = True
    return intents


@contextmanager
def delivery_errors(action: str) -> Iterator[None]:
    """The one place discord.py's exceptions become ``adapters.errors``."""
    try:
        yield
    except discord.RateLimited as exc:
        raise RateLimited(exc.retry_after) from exc
    except discord.Forbidden as exc:
        raise NotAllowed(f"Discord did not allow {action}: {exc.text or exc.status}") from exc
    except discord.HTTPException as exc:
        if exc.status == 429:
            raise RateLimited(retry_after(exc)) from exc
        if exc.code == 50035 and "length" in exc.text.lower():
            raise MessageTooLong(f"Discord refused {action}: {exc.text}") from exc
        raise DeliveryError(f"Discord refused {action}: {exc.status} ({exc.code})") from exc
    except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise DeliveryError(f"{action} failed on Discord: {type(exc).__name__}") from exc


def retry_after(exc: discord.HTTPException) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return float(headers[name])
        except (KeyError, ValueError):
            continue
    return 1.0


@contextmanager
def endpoints(settings: DiscordSettings) -> Iterator[None]:
    """Point discord.py (class attributes, so process-wide) at the configured servers,
    only when they differ from Discord's own; restore the previous values after."""
    route, socket = discord.http.Route, discord.gateway.DiscordWebSocket
    saved = route.BASE, socket.DEFAULT_GATEWAY
    if settings.api_base.rstrip("/") != DISCORD_API_BASE:
        route.BASE = settings.api_base.rstrip("/")
    if settings.gateway_url.rstrip("/") != DISCORD_GATEWAY_URL:
        socket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
    try:
        yield
    finally:
        route.BASE, socket.DEFAULT_GATEWAY = saved


class AdapterClient(discord.Client):
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
        self.tree: app_commands.CommandTree[AdapterClient] = app_commands.CommandTree(self)
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
