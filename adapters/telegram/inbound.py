"""Telegram messages -> ``InboundMessage``: pure conversion, no I/O.

Decides the sender scope and topic key (private chat, private topic, forum topic or plain
group), whether the bot is addressed (an @mention or text mention of the bot, a reply to
one of its messages, or a command meant for it), drops commands meant for another bot,
and lists the media the adapter has to download. A forum topic's creation message rides
along as ``reply_to_message`` on every message of the topic; that is not a reply to the
bot even when the bot opened the topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType

from adapters.base import ChatTarget, InboundMessage
from adapters.common.commands import is_command_name
from adapters.common.identity import BotIdentity
from adapters.common.sizes import human_size

PLATFORM: Final = "telegram"
_COMMAND: Final = re.compile(r"^/([A-Za-z0-9_]+)(?:@([A-Za-z0-9_]+))?(?=\s|$)(.*)$", re.DOTALL)
# Media that carry no text for the model: (attribute, label in the note).
_OTHER_MEDIA: Final = (
    ("video", "video"),
    ("animation", "animation"),
    ("audio", "audio"),
    ("voice", "voice message"),
    ("video_note", "video message"),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Download:
    """A file the adapter fetches and hands over as an image."""

    file_id: str
    media_type: str
    label: str  # names the file in a note when it cannot be read
    size: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Converted:
    message: InboundMessage
    downloads: tuple[Download, ...] = ()


def convert_update(update: Update, me: BotIdentity) -> Converted | None:
    """The inbound message an update carries, or None when there is nothing to answer."""
    if update.message is not None:
        return convert_message(update.message, me, edited=False)
    if update.edited_message is not None:
        return convert_message(update.edited_message, me, edited=True)
    return None


def convert_message(message: Message, me: BotIdentity, *, edited: bool) -> Converted | None:
    user = message.from_user
    if user is None:
        return None
    raw_text = message.text or message.caption or ""
    downloads, notes = media_of(message)
    if not raw_text and not downloads and not notes:
        return None  # a service message (topic created, member joined...)
    text, for_us = address_command(raw_text, me.name)
    if text is None:
        return None  # a command for another bot
    chat = message.chat
    private = chat.type == ChatType.PRIVATE
    topic_thread = _topic_thread(message, me, private=private)
    addressed = private or for_us or mentions_bot(message, me) or replies_to_bot(message, me)
    scope, topic = _scope(message, user.id, topic_thread, private=private)
    target = ChatTarget(
        platform=PLATFORM,
        chat_id=str(chat.id),
        thread_id=None if topic_thread is None else str(topic_thread),
        reply_to=None if private else str(message.message_id),
        extra={"chat_type": str(chat.type)},
    )
    inbound = InboundMessage(
        platform=PLATFORM,
        message_id=message_key(message, edited=edited),
        text=text if private else strip_leading_mention(text, me.name),
        user_id=str(user.id),
        user_name=user.full_name or user.username or str(user.id),
        scope=scope,
        target=target,
        topic=topic,
        is_direct=private,
        addressed=addressed,
        from_bot=user.is_bot,
        edited=edited,
        attachment_notes=notes,
        match={"chat": str(chat.id)},
    )
    return Converted(message=inbound, downloads=downloads)


def message_key(message: Message, *, edited: bool) -> str:
    """Unique per delivery of a message's content, for the pipeline's dedup."""
    key = f"{message.chat.id}:{message.message_id}"
    if not edited:
        return key
    edit_date = message.edit_date or message.date
    return f"{key}:edit:{int(edit_date.timestamp())}"


def platform_message_id(message_key: str) -> int:
    """The Telegram message id inside a ``message_key`` (edits included)."""
    return int(message_key.split(":")[1])


def address_command(text: str, username: str) -> tuple[str | None, bool]:
    """``(text, addressed)``: ``/cmd@thisbot`` loses its suffix and is addressed;
    ``/cmd@otherbot`` gives None; a bare known command is addressed (as Telegram bots
    answer a bare command in a group); anything else is unchanged and not addressed."""
    match = _COMMAND.match(text)
    if match is None:
        return text, False
    name, addressee, rest = match.groups()
    if addressee is None:
        return text, is_command_name(name)
    if addressee.lower() != username.lower():
        return None, False
    return f"/{name}{rest}", True


def _entities(message: Message) -> dict[MessageEntity, str]:
    if message.text is not None:
        return message.parse_entities()
    return message.parse_caption_entities()


def mentions_bot(message: Message, me: BotIdentity) -> bool:
    handle = f"@{me.name}".lower()
    for entity, text in _entities(message).items():
        if entity.type == MessageEntity.MENTION and text.lower() == handle:
            return True
        if (
            entity.type == MessageEntity.TEXT_MENTION
            and entity.user
            and str(entity.user.id) == me.user_id
        ):
            return True
    return False


def replies_to_bot(message: Message, me: BotIdentity) -> bool:
    reply = message.reply_to_message
    if reply is None or reply.from_user is None or str(reply.from_user.id) != me.user_id:
        return False
    if reply.forum_topic_created is not None:
        return False
    return not (message.is_topic_message and reply.message_id == message.message_thread_id)


def strip_leading_mention(text: str, username: str) -> str:
    """``@bot what now`` -> ``what now``; a message that is only the mention stays."""
    stripped = re.sub(rf"^@{re.escape(username)}\b[\s,:]*", "", text, flags=re.IGNORECASE)
    return stripped if stripped.strip() else text


def _topic_thread(message: Message, me: BotIdentity, *, private: bool) -> int | None:
    thread = message.message_thread_id
    if thread is None:
        return None
    if private:
        return thread if me.has_topics_enabled else None
    # Outside forums a message_thread_id only marks a reply chain, not a topic.
    return thread if message.chat.is_forum and message.is_topic_message else None


def _scope(
    message: Message, user_id: int, thread: int | None, *, private: bool
) -> tuple[str, str | None]:
    chat_id = message.chat.id
    if thread is not None:
        return f"{PLATFORM}:chat:{chat_id}:topic:{thread}", f"{chat_id}:{thread}"
    if private:
        return f"{PLATFORM}:user:{user_id}", None
    return f"{PLATFORM}:chat:{chat_id}", None


def media_of(message: Message) -> tuple[tuple[Download, ...], tuple[str, ...]]:
    """Images to download, and a note for every other attachment: nothing is dropped."""
    downloads: list[Download] = []
    notes: list[str] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: size.width * size.height)
        downloads.append(
            Download(
                file_id=largest.file_id,
                media_type="image/jpeg",
                label="photo",
                size=largest.file_size,
            )
        )
    document = message.document
    if document is not None:
        name = document.file_name or "document"
        mime = document.mime_type or "application/octet-stream"
        if mime.startswith("image/"):
            downloads.append(
                Download(
                    file_id=document.file_id, media_type=mime, label=name, size=document.file_size
                )
            )
        else:
            notes.append(f"{name} ({mime}, {human_size(document.file_size)})")
    notes.extend(_other_media_notes(message))
    return tuple(downloads), tuple(notes)


def _other_media_notes(message: Message) -> list[str]:
    notes = []
    for attribute, label in _OTHER_MEDIA:
        media = getattr(message, attribute)
        if media is not None:
            mime = getattr(media, "mime_type", None) or "unknown type"
            notes.append(f"{label} ({mime}, {human_size(media.file_size)})")
    if message.sticker is not None:
        notes.append(f"sticker {message.sticker.emoji or ''}".rstrip())
    if message.location is not None:
        notes.append(f"location {message.location.latitude}, {message.location.longitude}")
    if message.contact is not None:
        notes.append(f"contact {message.contact.first_name}")
    if message.poll is not None:
        notes.append(f"poll: {message.poll.question}")
    return notes
