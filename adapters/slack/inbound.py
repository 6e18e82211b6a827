"""Slack event payloads -> ``InboundMessage``: pure functions, no network.

Routing, by where a message was written:
- a direct message outside any thread: the user's scope ``slack:<team>:user:<id>``;
- a thread in the app's DM (an assistant thread): its own persisted topic conversation,
  scope ``slack:<team>:thread:<channel>:<thread_ts>``, topic ``<channel>:<thread_ts>``;
- a channel message that mentions the bot, or any message in a thread the bot owns: the
  thread's shared conversation (a top-level mention opens a thread under itself).
Every route gives one message the same ``message_id`` (``<channel>:<ts>``), so the
``app_mention`` and ``message.channels`` deliveries of one mention are deduplicated.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from adapters.base import ChatTarget, InboundMessage
from adapters.common.commands import COMMANDS
from adapters.common.identity import BotIdentity
from adapters.common.sizes import human_size
from runtime.history import Image

PLATFORM = "slack"
ChannelKind = Literal["im", "channel", "group"]

# Subtypes that carry a person's message; everything else (joins, topic changes,
# deletions, thread_broadcast copies of replies...) is not for the agent.
_USER_SUBTYPES = frozenset({None, "file_share", "me_message", "thread_broadcast"})
_BOT_SUBTYPES = frozenset({"bot_message", "bot_add", "bot_remove"})
# Sub-commands the slash command forwards as chat commands (the gateway's command set).
SLASH_SUBCOMMANDS = frozenset(COMMANDS)
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_COMMAND_ADDRESSEE = re.compile(r"^/([A-Za-z_]+)@(\S+)")


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackFile:
    name: str
    mimetype: str
    url: str
    size: int

    @property
    def is_image(self) -> bool:
        return self.mimetype.startswith("image/") and bool(self.url)

    def note(self) -> str:
        return f"{self.name} ({self.mimetype or 'unknown type'}, {human_size(self.size)})"


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedMessage:
    """A ``message`` / ``app_mention`` event reduced to what routing needs."""

    channel: str
    ts: str
    thread_ts: str | None
    user: str
    text: str
    kind: ChannelKind
    mentioned: bool
    from_bot: bool
    edited_ts: str | None = None
    files: tuple[SlackFile, ...] = ()

    @property
    def message_id(self) -> str:
        base = f"{self.channel}:{self.ts}"
        return f"{base}:edit:{self.edited_ts}" if self.edited_ts else base

    @property
    def root_ts(self) -> str:
        """The thread a reply belongs in: the message's thread, else under the message."""
        return self.thread_ts or self.ts

    @property
    def in_channel_thread(self) -> bool:
        return self.kind != "im" and self.thread_ts is not None


def thread_key(channel: str, thread_ts: str) -> str:
    return f"{channel}:{thread_ts}"


def thread_scope(team: str, channel: str, thread_ts: str) -> str:
    return f"{PLATFORM}:{team}:thread:{channel}:{thread_ts}"


def user_scope(team: str, user: str) -> str:
    return f"{PLATFORM}:{team}:user:{user}"


def channel_kind(channel: str, channel_type: str | None = None) -> ChannelKind:
    """From the event's ``channel_type`` when present (``app_mention`` has none), else
    from Slack's id prefixes: D for direct messages, G for private groups."""
    if channel_type == "im" or (channel_type is None and channel.startswith("D")):
        return "im"
    if channel_type in ("group", "mpim") or (channel_type is None and channel.startswith("G")):
        return "group"
    return "channel"


def _mention(bot_user_id: str) -> re.Pattern[str]:
    return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")


def mentions_bot(text: str, identity: BotIdentity) -> bool:
    return _mention(identity.user_id).search(text) is not None


def clean_text(text: str, identity: BotIdentity) -> str:
    """Slack's wire format -> what a person typed: the bot's mention removed, other
    mentions, channels and links made readable, entities unescaped."""
    text = _mention(identity.user_id).sub(" ", text)

    def readable(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "#")):
            return target[0] + (label or target[1:])
        if target.startswith("!"):
            return "@" + (label or target[1:])
        return f"{label} ({target})" if label and label != target else target

    text = _LINK.sub(readable, text)
    lines = [" ".join(line.split()) for line in html.unescape(text).strip().splitlines()]
    return "\n".join(lines).strip()


def command_for_bot(text: str, identity: BotIdentity) -> str | None:
    """``/cmd@thisbot args`` -> ``/cmd args``; None for ``/cmd@otherbot`` (not ours)."""
    match = _COMMAND_ADDRESSEE.match(text)
    if match is None:
        return text
    addressee = match.group(2).lstrip("@").lower()
    if addressee not in (identity.name.lower(), identity.user_id.lower()):
        return None
    return f"/{match.group(1)}{text[match.end() :]}"


def parse_files(raw: Any) -> tuple[SlackFile, ...]:
    if not isinstance(raw, list):
        return ()
    files = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        files.append(
            SlackFile(
                name=str(item.get("name") or item.get("title") or item.get("id") or "file"),
                mimetype=str(item.get("mimetype") or ""),
                url=str(item.get("url_private_download") or item.get("url_private") or ""),
                size=int(item.get("size") or 0),
            )
        )
    return tuple(files)


def _is_from_bot(message: Mapping[str, Any], identity: BotIdentity) -> bool:
    return (
        bool(message.get("bot_id"))
        or message.get("user") == identity.user_id
        or message.get("subtype") in _BOT_SUBTYPES
    )


def parse_message(event: Mapping[str, Any], identity: BotIdentity) -> ParsedMessage | None:
    """None for events that are not a message someone wrote (joins, deletions...)."""
    subtype = event.get("subtype")
    message: Mapping[str, Any] = event
    edited_ts: str | None = None
    if subtype == "message_changed":
        inner = event.get("message")
        if not isinstance(inner, Mapping) or inner.get("subtype") not in _USER_SUBTYPES:
            return None
        message, edited_ts = inner, str(event.get("event_ts") or event.get("ts") or "")
    elif subtype not in _USER_SUBTYPES and subtype not in _BOT_SUBTYPES:
        return None
    channel = str(event.get("channel") or "")
    ts = str(message.get("ts") or "")
    if not channel or not ts:
        return None
    text = str(message.get("text") or "")
    thread_ts = message.get("thread_ts")
    return ParsedMessage(
        channel=channel,
        ts=ts,
        thread_ts=str(thread_ts) if thread_ts and thread_ts != ts else None,
        user=str(message.get("user") or message.get("bot_id") or ""),
        text=text,
        kind=channel_kind(channel, event.get("channel_type")),
        mentioned=mentions_bot(text, identity),
        from_bot=_is_from_bot(message, identity),
        edited_ts=edited_ts or None,
        files=parse_files(message.get("files")),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    scope: str
    topic: str | None
    target: ChatTarget
    addressed: bool


def route(parsed: ParsedMessage, identity: BotIdentity, *, owned: bool) -> Route:
    """Where a message's conversation lives and where its reply goes."""
    team = identity.team_id
    extra = {"team": team, "user": parsed.user}
    if parsed.kind == "im" and parsed.thread_ts is None:
        target = ChatTarget(platform=PLATFORM, chat_id=parsed.channel, extra=extra)
        return Route(scope=user_scope(team, parsed.user), topic=None, target=target, addressed=True)
    root = parsed.root_ts
    if parsed.kind == "im":
        extra["assistant"] = "1"
    target = ChatTarget(
        platform=PLATFORM,
        chat_id=parsed.channel,
        thread_id=root,
        reply_to=parsed.ts,
        extra=extra,
    )
    return Route(
        scope=thread_scope(team, parsed.channel, root),
        topic=thread_key(parsed.channel, root),
        target=target,
        addressed=parsed.kind == "im" or parsed.mentioned or owned,
    )


def to_inbound(
    parsed: ParsedMessage,
    identity: BotIdentity,
    *,
    owned: bool = False,
    user_name: str = "",
    images: tuple[Image, ...] = (),
    notes: tuple[str, ...] = (),
) -> InboundMessage | None:
    """None when the message is a command addressed to another bot."""
    text = command_for_bot(clean_text(parsed.text, identity), identity)
    if text is None:
        return None
    where = route(parsed, identity, owned=owned)
    return InboundMessage(
        platform=PLATFORM,
        message_id=parsed.message_id,
        text=text,
        user_id=parsed.user,
        user_name=user_name or parsed.user,
        scope=where.scope,
        target=where.target,
        topic=where.topic,
        is_direct=parsed.kind == "im",
        addressed=where.addressed,
        from_bot=parsed.from_bot,
        edited=parsed.edited_ts is not None,
        images=images,
        attachment_notes=notes,
        match={"team": identity.team_id, "channel": parsed.channel},
    )


def slash_text(text: str) -> str:
    """``/agent topic X`` arrives as text ``topic X``: forward it as ``/topic X``; an
    empty or unknown sub-command shows the help."""
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower().lstrip("/") not in SLASH_SUBCOMMANDS:
        return "/help"
    rest = f" {words[1]}" if len(words) > 1 else ""
    return f"/{words[0].lower().lstrip('/')}{rest}"


def command_message(payload: Mapping[str, Any], identity: BotIdentity) -> InboundMessage:
    """A slash command as a chat command of the user's own conversation (slash commands
    carry no thread), answered where it was typed."""
    channel = str(payload.get("channel_id") or "")
    user = str(payload.get("user_id") or "")
    kind = channel_kind(channel)
    trigger = str(payload.get("trigger_id") or "")
    return InboundMessage(
        platform=PLATFORM,
        message_id=f"command:{trigger}" if trigger else f"command:{channel}:{user}",
        text=slash_text(str(payload.get("text") or "")),
        user_id=user,
        user_name=str(payload.get("user_name") or user),
        scope=user_scope(identity.team_id, user),
        target=ChatTarget(
            platform=PLATFORM, chat_id=channel, extra={"team": identity.team_id, "user": user}
        ),
        is_direct=kind == "im",
        addressed=True,
        match={"team": identity.team_id, "channel": channel},
    )
