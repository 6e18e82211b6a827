"""Discord messages and slash-command interactions -> ``InboundMessage``: pure, no I/O.

The adapter decides where a conversation lives (it may create a thread or look up who
owns one) and hands that over as a ``Place``; this module builds the scope, target and
binding keys of each place, cleans the text (the bot's mention stripped, other mentions
made readable, a ``/command@otherbot`` dropped), names new threads from the first words
of their first message, and splits attachments into images to download and notes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from adapters.base import ChatTarget, InboundMessage
from adapters.common.commands import COMMANDS
from adapters.common.identity import BotIdentity
from adapters.common.sizes import human_size
from runtime.history import Image

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

PLATFORM: Final = "discord"
THREAD_NAME_LIMIT: Final = 100
DEFAULT_THREAD_NAME: Final = "Conversation"
THREAD_TYPES: Final = frozenset(
    {
        discord.ChannelType.public_thread,
        discord.ChannelType.private_thread,
        discord.ChannelType.news_thread,
    }
)
_CHAT_TYPES: Final = frozenset({discord.MessageType.default, discord.MessageType.reply})
_COMMAND: Final = re.compile(r"^/([A-Za-z0-9_]+)(?:@(\S+))?(?=\s|$)(.*)$", re.DOTALL)
_SPACES: Final = re.compile(r"\s+")
CommandHandler = Callable[["discord.Interaction", str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Place:
    """Where a conversation lives: its scope, topic, reply target and binding keys."""

    scope: str
    target: ChatTarget
    topic: str | None = None
    is_direct: bool = False
    match: Mapping[str, str] = field(default_factory=dict)


def dm_place(user_id: int, channel_id: int) -> Place:
    target = ChatTarget(platform=PLATFORM, chat_id=str(channel_id))
    return Place(scope=f"{PLATFORM}:user:{user_id}", target=target, is_direct=True)


def thread_place(
    thread_id: int,
    *,
    parent_id: int | None,
    guild_id: int | None,
    extra: Mapping[str, str] | None = None,
) -> Place:
    """A thread is its own conversation, keyed by the thread id."""
    key = str(thread_id)
    target = ChatTarget(platform=PLATFORM, chat_id=key, thread_id=key, extra=dict(extra or {}))
    return Place(
        scope=f"{PLATFORM}:thread:{key}",
        target=target,
        topic=key,
        match=_match(guild_id, parent_id),
    )


def channel_place(channel_id: int, *, guild_id: int | None, reply_to: int | None) -> Place:
    """A guild channel outside any thread (commands, or a thread that could not be made)."""
    target = ChatTarget(
        platform=PLATFORM,
        chat_id=str(channel_id),
        reply_to=None if reply_to is None else str(reply_to),
    )
    return Place(
        scope=f"{PLATFORM}:channel:{channel_id}",
        target=target,
        match=_match(guild_id, channel_id),
    )


def _match(guild_id: int | None, channel_id: int | None) -> dict[str, str]:
    keys = {"guild": guild_id, "channel": channel_id}
    return {key: str(value) for key, value in keys.items() if value is not None}


def is_chat_message(message: discord.Message) -> bool:
    """Plain messages and replies; joins, pins and thread notices are not for the agent."""
    return message.type in _CHAT_TYPES


def is_from_bot(message: discord.Message) -> bool:
    return message.author.bot or message.webhook_id is not None


def mentions_bot(message: discord.Message, bot_id: str) -> bool:
    return any(str(user.id) == bot_id for user in message.mentions)


def clean_text(message: discord.Message, bot: BotIdentity) -> str | None:
    """The text for the agent: the bot's mentions removed, other users' mentions shown as
    ``@name``; a ``/command@bot`` loses its suffix. None when the message is a command
    addressed to another bot."""
    text = re.sub(rf"<@!?{bot.user_id}>", " ", message.content)
    for user in message.mentions:
        if str(user.id) != bot.user_id:
            text = re.sub(rf"<@!?{user.id}>", f"@{user.display_name}", text)
    text = text.strip()
    match = _COMMAND.match(text)
    if match is None or match.group(2) is None:
        return text
    if match.group(2).lower() != bot.name.lower():
        return None
    return f"/{match.group(1)}{match.group(3)}"


def is_command(text: str) -> bool:
    """A slash command typed as text is answered where it was typed: it opens no thread."""
    return _COMMAND.match(text) is not None


def thread_name(text: str, limit: int = THREAD_NAME_LIMIT) -> str:
    """The first words of the first non-empty line, cut at a word boundary."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    words = _SPACES.sub(" ", line).strip()
    if not words:
        return DEFAULT_THREAD_NAME
    if len(words) <= limit:
        return words
    cut = words[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "\N{HORIZONTAL ELLIPSIS}"


def is_image(attachment: discord.Attachment, max_bytes: int) -> bool:
    kind = (attachment.content_type or "").split(";")[0].strip()
    return kind.startswith("image/") and attachment.size <= max_bytes


def attachment_note(attachment: discord.Attachment) -> str:
    kind = (attachment.content_type or "unknown type").split(";")[0].strip()
    return f"{attachment.filename} ({kind}, {human_size(attachment.size)})"


def split_attachments(
    attachments: Sequence[discord.Attachment], max_bytes: int
) -> tuple[list[discord.Attachment], list[str]]:
    """(images to download, notes for everything else)."""
    images = [a for a in attachments if is_image(a, max_bytes)]
    notes = [attachment_note(a) for a in attachments if a not in images]
    return images, notes


def message_id(message: discord.Message, *, edited: bool) -> str:
    """Unique per delivery, so the pipeline's dedup tells an edit from the original."""
    if not edited:
        return str(message.id)
    stamp = message.edited_at.timestamp() if message.edited_at else 0.0
    return f"{message.id}:edit:{stamp:.3f}"


def to_inbound(
    message: discord.Message,
    place: Place,
    *,
    text: str,
    addressed: bool,
    edited: bool = False,
    images: tuple[Image, ...] = (),
    notes: Sequence[str] = (),
) -> InboundMessage:
    return InboundMessage(
        platform=PLATFORM,
        message_id=message_id(message, edited=edited),
        text=text,
        user_id=str(message.author.id),
        user_name=message.author.display_name,
        scope=place.scope,
        target=place.target,
        topic=place.topic,
        is_direct=place.is_direct,
        addressed=addressed or place.is_direct,
        from_bot=is_from_bot(message),
        edited=edited,
        images=images,
        attachment_notes=tuple(notes),
        match=place.match,
    )


def interaction_place(interaction: discord.Interaction) -> Place:
    """Where a slash command was run: a DM, a thread, or a guild channel."""
    channel = interaction.channel
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is None:
        return dm_place(interaction.user.id, channel_id)
    if getattr(channel, "type", None) in THREAD_TYPES:
        parent_id = getattr(channel, "parent_id", None)
        return thread_place(channel_id, parent_id=parent_id, guild_id=interaction.guild_id)
    return channel_place(channel_id, guild_id=interaction.guild_id, reply_to=None)


def interaction_to_inbound(interaction: discord.Interaction, text: str) -> InboundMessage:
    """A slash command, forwarded as its text form; ``extra['interaction']`` lets the
    adapter answer with the interaction's own (deferred) response."""
    place = interaction_place(interaction)
    extra = {**place.target.extra, "interaction": str(interaction.id)}
    target = ChatTarget(
        platform=PLATFORM,
        chat_id=place.target.chat_id,
        thread_id=place.target.thread_id,
        extra=extra,
    )
    return InboundMessage(
        platform=PLATFORM,
        message_id=str(interaction.id),
        text=text,
        user_id=str(interaction.user.id),
        user_name=interaction.user.display_name,
        scope=place.scope,
        target=target,
        topic=place.topic,
        is_direct=place.is_direct,
        addressed=True,
        match=place.match,
    )


def slash_commands(handler: CommandHandler) -> list[app_commands.Command[Any, ..., None]]:
    """The gateway's chat commands as Discord application commands; running one calls
    ``handler`` with the command's text form ("/topic work")."""
    return [
        _slash_command(name, info.summary, info.argument, handler)
        for name, info in COMMANDS.items()
    ]


def _slash_command(
    name: str, description: str, option: str | None, handler: CommandHandler
) -> app_commands.Command[Any, ..., None]:
    async def plain(interaction: discord.Interaction) -> None:
        await handler(interaction, f"/{name}")

    @app_commands.describe(text=option or "")
    async def with_text(interaction: discord.Interaction, text: str | None = None) -> None:
        await handler(interaction, f"/{name} {text}" if text else f"/{name}")

    callback: Any = plain if option is None else with_text
    return app_commands.Command(name=name, description=description, callback=callback)
