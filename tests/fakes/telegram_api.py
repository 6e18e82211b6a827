"""A local fake of the Telegram Bot API that python-telegram-bot can talk to unchanged.

How the pieces interact: every HTTP request enters `FakeTelegram._handle`, which decodes the
parameters the way the real server does (JSON body, urlencoded or multipart form, with
JSON-serialised objects inside forms read per argument), checks the token, applies injected
faults, runs one method handler, records the call and then signals `_changed`. Test-side
helpers (`user_sends`, `create_topic`, ...) mutate the same state and signal too, so
`wait_for` and long polls wake on any change instead of sleeping. Updates stay in `_pending`
until a getUpdates offset confirms them, as on the real server: an unconfirmed update is
delivered again to the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, overload

import aiohttp
from aiohttp import web
from telegram.constants import ReactionEmoji

__all__ = [
    "SECRET_HEADER",
    "ApiError",
    "Call",
    "ChatAction",
    "Draft",
    "EntityParseError",
    "FakeTelegram",
    "SentMessage",
    "Transcript",
    "detect_entities",
    "parse_html",
    "render_text",
]

MAX_TEXT: Final = 4096
MAX_CAPTION: Final = 1024
MAX_TOPIC_NAME: Final = 128
DEFAULT_ICON_COLOR: Final = 7322096
CHAT_ACTIONS: Final = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
BOT_REACTIONS: Final = frozenset(emoji.value for emoji in ReactionEmoji)
NOT_MODIFIED: Final = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
_T = TypeVar("_T")
JSON = dict[str, Any]
MessageKind = Literal["text", "photo", "document"]
Handler = Callable[["_Params"], Awaitable[Any]]


# -- markup: what the server makes of a text ---------------------------------------------


class ApiError(Exception):
    """An error answer of the Bot API: HTTP status, description and optional parameters."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class EntityParseError(ValueError):
    """Markup the server refuses; the message is TDLib's, e.g. 'Unsupported start tag ...'."""


_HTML_ENTITY_TYPES: Final = {
    "a": "text_link",
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_CHAR_REFERENCE: Final = re.compile(r"&(?:#[xX]([0-9a-fA-F]{1,6})|#([0-9]{1,7})|(lt|gt|amp|quot));")
_NAMED_CHARS: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_AUTO_ENTITIES: Final = (
    ("bot_command", re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/@])")),
    ("mention", re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}(?![\w@])")),
    ("url", re.compile(r"\bhttps?://[^\s<>\"']+")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d]\w*")),
)
# Entities whose text the server does not scan for mentions, commands or links.
_OPAQUE_ENTITIES: Final = frozenset({"code", "pre", "text_link", "text_mention", "custom_emoji"})
_LANGUAGE: Final = "\0language"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Bot API entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _reference_char(match: re.Match[str]) -> str:
    hex_code, dec_code, name = match.groups()
    if name:
        return _NAMED_CHARS[name]
    code = int(hex_code, 16) if hex_code else int(dec_code)
    valid = 0 < code < 0x110000 and not 0xD800 <= code < 0xE000
    return chr(code) if valid else match.group()


@dataclass(slots=True)
class _OpenTag:
    name: str
    attrs: dict[str, str]
    offset: int


class _HtmlParser:
    """TDLib's parse_html rules: the tags it knows, its error texts, byte offsets."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.out: list[str] = []
        self.length = 0
        self.stack: list[_OpenTag] = []
        self.entities: list[JSON] = []

    def parse(self) -> tuple[str, list[JSON]]:
        while self.pos < len(self.src):
            char = self.src[self.pos]
            if char == "&":
                self._reference()
            elif char != "<":
                self._emit(char)
                self.pos += 1
            elif self.src.startswith("</", self.pos):
                self._end_tag()
            else:
                self._start_tag()
        if self.stack:
            name = self.stack[-1].name
            raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{name}"')
        return "".join(self.out), self.entities

    def _fail(self, what: str, index: int, *, suffix: str = "") -> EntityParseError:
        offset = len(self.src[:index].encode())
        return EntityParseError(f"{what} at byte offset {offset}{suffix}")

    def _emit(self, text: str) -> None:
        self.out.append(text)
        self.length += utf16_len(text)

    def _reference(self) -> None:
        match = _CHAR_REFERENCE.match(self.src, self.pos)
        decoded = _reference_char(match) if match else "&"
        if match is None or decoded == match.group():
            self._emit("&")
            self.pos += 1
        else:
            self._emit(decoded)
            self.pos = match.end()

    def _skip_spaces(self, index: int) -> int:
        while index < len(self.src) and self.src[index].isspace():
            index += 1
        return index

    def _word_end(self, index: int) -> int:
        while index < len(self.src) and not self.src[index].isspace() and self.src[index] != ">":
            index += 1
        return index

    def _start_tag(self) -> None:
        begin = self.pos
        end = self._word_end(begin + 1)
        if end >= len(self.src):
            raise self._fail("Unclosed start tag", begin)
        name = self.src[begin + 1 : end].lower()
        if name not in _HTML_ENTITY_TYPES:
            raise self._fail(f'Unsupported start tag "{name}"', begin)
        attrs = self._attributes(name, begin, end)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise self._fail('Tag "span" must have class "tg-spoiler"', begin)
        if name == "tg-emoji" and not attrs.get("emoji-id"):
            raise self._fail('Tag "tg-emoji" must have attribute "emoji-id"', begin)
        self.stack.append(_OpenTag(name, attrs, self.length))

    def _attributes(self, name: str, begin: int, index: int) -> dict[str, str]:
        attrs: dict[str, str] = {}
        src = self.src
        while True:
            index = self._skip_spaces(index)
            if index >= len(src):
                raise self._fail("Unclosed start tag", begin)
            if src[index] == ">":
                self.pos = index + 1
                return attrs
            start = index
            while index < len(src) and not src[index].isspace() and src[index] not in "=>":
                index += 1
            key = src[start:index].lower()
            if not key:
                raise self._fail(f'Empty attribute name in the tag "{name}"', begin)
            index = self._skip_spaces(index)
            if index >= len(src) or src[index] != "=":
                attrs[key] = ""  # valueless, as in <blockquote expandable>
                continue
            index, attrs[key] = self._attribute_value(begin, self._skip_spaces(index + 1))

    def _attribute_value(self, begin: int, index: int) -> tuple[int, str]:
        src = self.src
        if index >= len(src):
            raise self._fail("Unclosed start tag", begin)
        if src[index] in "\"'":
            close = src.find(src[index], index + 1)
            if close < 0:
                raise self._fail("Unclosed start tag", begin)
            return close + 1, _CHAR_REFERENCE.sub(_reference_char, src[index + 1 : close])
        end = self._word_end(index)
        return end, _CHAR_REFERENCE.sub(_reference_char, src[index:end])

    def _end_tag(self) -> None:
        begin = self.pos
        if not self.stack:
            raise self._fail("Unexpected end tag", begin)
        end = self._word_end(begin + 2)
        written = self.src[begin + 2 : end]
        close = self._skip_spaces(end)
        if close >= len(self.src) or self.src[close] != ">":
            raise self._fail("Unclosed end tag", begin)
        self.pos = close + 1
        tag = self.stack.pop()
        if written and written.lower() != tag.name:
            expected = f'expected "</{tag.name}>", found "</{written}>"'
            raise self._fail("Unmatched end tag", begin, suffix=f", {expected}")
        self._close(tag)

    def _close(self, tag: _OpenTag) -> None:
        language = tag.attrs.get("class", "")
        inside_pre = bool(self.stack) and self.stack[-1].name == "pre"
        if tag.name == "code" and inside_pre and language.startswith("language-"):
            # <pre><code class="language-x"> is one pre entity carrying the language.
            self.stack[-1].attrs[_LANGUAGE] = language.removeprefix("language-")
            return
        length = self.length - tag.offset
        if length == 0 or (tag.name == "a" and not tag.attrs.get("href")):
            return
        entity: JSON = {
            "type": _HTML_ENTITY_TYPES[tag.name],
            "offset": tag.offset,
            "length": length,
        }
        if tag.name == "a":
            entity["url"] = tag.attrs["href"]
        elif tag.name == "pre" and _LANGUAGE in tag.attrs:
            entity["language"] = tag.attrs[_LANGUAGE]
        elif tag.name == "blockquote" and "expandable" in tag.attrs:
            entity["type"] = "expandable_blockquote"
        elif tag.name == "tg-emoji":
            entity["custom_emoji_id"] = tag.attrs["emoji-id"]
        self.entities.append(entity)


def _by_position(entities: list[JSON]) -> list[JSON]:
    return sorted(entities, key=lambda entity: (entity["offset"], -entity["length"]))


def parse_html(text: str) -> tuple[str, list[JSON]]:
    """The text and entities the server derives from parse_mode=HTML, or EntityParseError."""
    shown, entities = _HtmlParser(text).parse()
    return shown, _by_position(entities)


def detect_entities(text: str) -> list[JSON]:
    """Entities the server finds by itself: bot commands, @mentions, links, hashtags."""
    spans: list[tuple[int, int, str]] = []
    for kind, pattern in _AUTO_ENTITIES:
        for match in pattern.finditer(text):
            start, end = match.span()
            if kind == "url":
                end = start + len(match.group().rstrip(".,;:!?)"))
            if not any(
                start < taken_end and taken_start < end for taken_start, taken_end, _ in spans
            ):
                spans.append((start, end, kind))
    found = [
        {"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(text[start:end])}
        for start, end, kind in spans
    ]
    return _by_position(found)


def _overlaps(first: JSON, second: JSON) -> bool:
    first_end = first["offset"] + first["length"]
    second_end = second["offset"] + second["length"]
    return bool(first["offset"] < second_end and second["offset"] < first_end)


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Strip surrounding whitespace as the server does, moving entities along."""
    body = text.lstrip()
    lead = utf16_len(text) - utf16_len(body)
    body = body.rstrip()
    total = utf16_len(body)
    kept = []
    for entity in entities:
        start = max(int(entity["offset"]) - lead, 0)
        end = min(int(entity["offset"]) + int(entity["length"]) - lead, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return body, kept


def render_text(text: str, parse_mode: str | None, entities: Any) -> tuple[str, list[JSON]]:
    """What a client displays for a text and its markup, or the server's 400.

    Markdown and MarkdownV2 pass through unvalidated (the text keeps its markup); explicit
    entities count only without a parse_mode, as on the server.
    """
    mode = (parse_mode or "").lower()
    if mode == "html":
        try:
            shown, found = parse_html(text)
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from exc
    elif mode in {"", "markdown", "markdownv2"}:
        shown = text
        given = entities if not mode and isinstance(entities, list) else []
        found = [dict(entity) for entity in given if isinstance(entity, dict)]
    else:
        raise bad_request("unsupported parse_mode")
    shown, found = _trim(shown, found)
    for auto in detect_entities(shown):
        clash = any(
            _overlaps(auto, entity)
            and (entity["type"] in _OPAQUE_ENTITIES or entity["type"] == auto["type"])
            for entity in found
        )
        if not clash:
            found.append(auto)
    return shown, _by_position(found)


def check_length(text: str, limit: int, *, empty: str | None, too_long: str) -> None:
    """Limits count the text after entity parsing, in UTF-16 code units as the real
    server does (an emoji outside the BMP counts 2)."""
    if not text and empty is not None:
        raise bad_request(empty)
    if utf16_len(text) > limit:
        raise bad_request(too_long)


# -- records ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """One request as the server saw it; status 0 means the fake dropped the connection."""

    method: str
    params: Mapping[str, Any]
    files: Mapping[str, bytes]
    status: int
    description: str | None
    result: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class SentMessage:
    """A message the bot sent, as a user sees it now (after edits, before deletion)."""

    chat_id: int
    message_id: int
    kind: MessageKind
    text: str
    source: str
    parse_mode: str | None
    entities: tuple[JSON, ...]
    thread_id: int | None
    reply_to: int | None
    reply_markup: JSON | None
    edits: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatAction:
    chat_id: int
    action: str
    thread_id: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Draft:
    chat_id: int
    draft_id: int
    text: str
    source: str
    parse_mode: str | None
    thread_id: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Transcript:
    """What a user of one chat would see of the bot."""

    chat_id: int
    messages: tuple[SentMessage, ...]
    reactions: Mapping[int, tuple[str, ...]]
    topics: Mapping[int, str]
    actions: tuple[ChatAction, ...]
    drafts: tuple[Draft, ...]


@dataclass(slots=True)
class _Upload:
    filename: str
    data: bytes
    mime_type: str | None


@dataclass(slots=True)
class _StoredFile:
    file_id: str
    unique_id: str
    path: str
    data: bytes
    file_name: str | None
    mime_type: str | None


@dataclass(slots=True)
class _BotMessage:
    kind: MessageKind
    source: str
    parse_mode: str | None
    reply_to: int | None
    edits: int = 0


@dataclass(slots=True)
class _Topic:
    name: str
    icon_color: int
    created: JSON
    by_bot: bool


@dataclass(slots=True, eq=False)
class _Chat:
    info: JSON
    next_message_id: int = 1
    messages: dict[int, JSON] = field(default_factory=dict)
    bot_messages: dict[int, _BotMessage] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    topics: dict[int, _Topic] = field(default_factory=dict)
    reactions: dict[int, tuple[str, ...]] = field(default_factory=dict)
    actions: list[ChatAction] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    reactions_allowed: bool = True
    can_manage_topics: bool = True

    @property
    def id(self) -> int:
        return int(self.info["id"])

    def live(self, message_id: int) -> JSON | None:
        return None if message_id in self.deleted else self.messages.get(message_id)


@dataclass(slots=True)
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int


class _Params:
    """Request parameters, converted per argument as the real server does."""

    __slots__ = ("files", "values")

    def __init__(self, values: Mapping[str, Any], files: Mapping[str, _Upload]) -> None:
        self.values = dict(values)
        self.files = dict(files)

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value) if isinstance(value, dict | list | bool) else str(value)

    def integer(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def required_int(self, name: str) -> int:
        value = self.integer(name)
        if value is None:
            raise bad_request(f"{name} is empty")
        return value

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in {"true", "1"}
        return bool(value)

    def obj(self, name: str) -> Any:
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None


async def _read_params(request: web.Request) -> _Params:
    values: dict[str, Any] = dict(request.query)
    files: dict[str, _Upload] = {}
    if not request.body_exists:
        return _Params(values, files)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if not isinstance(body, dict):
            raise bad_request("can't parse JSON object")
        values.update(body)
    elif request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                values[part.name] = await part.text()
            else:
                data = bytes(await part.read())
                files[part.name] = _Upload(part.filename, data, part.headers.get("Content-Type"))
    else:
        form = await request.post()
        values.update({key: value for key, value in form.items() if isinstance(value, str)})
    return _Params(values, files)


def _error_body(error: ApiError) -> JSON:
    body: JSON = {"ok": False, "error_code": error.status, "description": error.description}
    if error.parameters:
        body["parameters"] = error.parameters
    return body


def _default_description(status: int, retry_after: int) -> str:
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden: bot was blocked by the user",
        404: "Not Found",
        409: "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running",
        429: f"Too Many Requests: retry after {retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(status, "Internal Server Error")


class FakeTelegram:
    """An aiohttp server on 127.0.0.1 speaking the Bot API for one bot.

    Point a real client at it with `Bot(token, base_url=fake.base_url,
    base_file_url=fake.base_file_url)`.
    """

    def __init__(
        self,
        *,
        token: str = "123456789:AAFakeTokenForTests_0123456789abcdef",
        bot_id: int | None = None,
        username: str = "gateway_test_bot",
        first_name: str = "Gateway",
        can_join_groups: bool = True,
        has_topics_enabled: bool = False,
    ) -> None:
        self.token = token
        head = token.partition(":")[0]
        self.bot_id = bot_id if bot_id is not None else int(head) if head.isdigit() else 1
        self.username = username
        self.first_name = first_name
        self.can_join_groups = can_join_groups
        # Privacy mode off: every group message reaches the bot, so what tests exercise is
        # the gateway's own mention gating, not the server's filter.
        self.can_read_all_group_messages = True
        self.has_topics_enabled = has_topics_enabled
        self.allows_users_to_create_topics = False
        self.supports_drafts = True
        # TDLib truncates long topic names (clean_name); tests that want a hard failure opt in.
        self.reject_long_topic_names = False
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._closing = False
        self._changed = asyncio.Event()
        self._chats: dict[int, _Chat] = {}
        self._usernames: dict[str, int] = {}
        self._user_ids = itertools.count(777_000_001)
        self._group_ids = itertools.count(1)
        self._update_ids = itertools.count(600_000_001)
        self._file_ids = itertools.count(1)
        self._pending: list[JSON] = []
        self._history: dict[int, JSON] = {}
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0
        self._waiting_pollers = 0
        self._calls: list[Call] = []
        self._faults: defaultdict[str, deque[ApiError]] = defaultdict(deque)
        self._drops: defaultdict[str, int] = defaultdict(int)
        self._files: dict[str, _StoredFile] = {}
        self._webhook: _Webhook | None = None
        self._callback_answers: dict[str, JSON] = {}
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._admin = self.make_user("Admin", username="group_admin")
        self._methods = self._method_table()

    def _method_table(self) -> dict[str, Handler]:
        """Bot API methods by lower-cased name: the real server matches names that way."""
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "sendmessagedraft": self._send_message_draft,
            "sendchataction": self._send_chat_action,
            "setmessagereaction": self._set_message_reaction,
            "createforumtopic": self._create_forum_topic,
            "editforumtopic": self._edit_forum_topic,
            "deletemessage": self._delete_message,
            "getfile": self._get_file,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "answercallbackquery": self._answer_callback_query,
        }

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up on a long poll must not leave it waiting.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/file/bot"

    # -- test-side world building ----------------------------------------------------------

    def make_user(
        self,
        first_name: str = "Alice",
        *,
        username: str | None = None,
        last_name: str | None = None,
        user_id: int | None = None,
        is_bot: bool = False,
        language_code: str | None = "en",
    ) -> JSON:
        user: JSON = {
            "id": user_id if user_id is not None else next(self._user_ids),
            "is_bot": is_bot,
            "first_name": first_name,
        }
        optional = {"last_name": last_name, "username": username, "language_code": language_code}
        user.update({key: value for key, value in optional.items() if value is not None})
        return user

    def bot_user(self, *, full: bool = False) -> JSON:
        user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }
        if full:
            user.update(
                can_join_groups=self.can_join_groups,
                can_read_all_group_messages=self.can_read_all_group_messages,
                supports_inline_queries=False,
                can_connect_to_business=False,
                has_main_web_app=False,
                has_topics_enabled=self.has_topics_enabled,
                allows_users_to_create_topics=self.allows_users_to_create_topics,
            )
        return user

    def private_chat(self, user: JSON) -> int:
        chat_id = int(user["id"])
        if chat_id not in self._chats:
            info: JSON = {"id": chat_id, "type": "private"}
            for key in ("first_name", "last_name", "username"):
                if key in user:
                    info[key] = user[key]
            self._chats[chat_id] = _Chat(info)
        return chat_id

    def group(self, title: str = "Test group") -> int:
        chat_id = -(4_000_000_000 + next(self._group_ids))
        self._chats[chat_id] = _Chat({"id": chat_id, "type": "group", "title": title})
        return chat_id

    def supergroup(
        self, title: str = "Test supergroup", *, forum: bool = False, username: str | None = None
    ) -> int:
        chat_id = -(1_000_000_000_000 + next(self._group_ids))
        info: JSON = {"id": chat_id, "type": "supergroup", "title": title}
        if username is not None:
            info["username"] = username
            self._usernames[username.lower()] = chat_id
        if forum:
            info["is_forum"] = True
        self._chats[chat_id] = _Chat(info)
        return chat_id

    def create_topic(
        self,
        chat_id: int,
        name: str,
        *,
        icon_color: int = DEFAULT_ICON_COLOR,
        creator: JSON | None = None,
    ) -> int:
        """Open a topic as a user would; the service message reaches the bot as an update."""
        chat = self._state(chat_id)
        if not self._has_topics(chat):
            raise ValueError(f"chat {chat_id} has no topics (not a forum / topics disabled)")
        creator = creator if creator is not None else self._admin
        thread_id = self._open_topic(chat, name, icon_color, creator)
        self._queue({"message": chat.topics[thread_id].created})
        return thread_id

    def set_reactions_allowed(self, chat_id: int, allowed: bool) -> None:
        self._state(chat_id).reactions_allowed = allowed

    def set_can_manage_topics(self, chat_id: int, allowed: bool) -> None:
        self._state(chat_id).can_manage_topics = allowed

    def add_file(
        self, data: bytes, *, file_name: str | None = None, mime_type: str | None = None
    ) -> str:
        """Register bytes the bot can fetch with getFile and download; returns the file_id."""
        return self._store_file(data, "documents", file_name, mime_type).file_id

    # -- test-side users -------------------------------------------------------------------

    def user_sends(
        self,
        chat: int,
        user: JSON,
        text: str = "",
        *,
        thread_id: int | None = None,
        reply_to: int | None = None,
        entities: list[JSON] | None = None,
        photo: bytes | None = None,
        caption: str | None = None,
        edited: bool = False,
    ) -> JSON:
        """Queue the update a user's message produces and return its Message JSON.

        edited=True edits this user's latest message in the chat instead.
        """
        state = self._state(chat)
        if edited:
            latest = max(
                (mid for mid, m in state.messages.items() if m["from"]["id"] == user["id"]),
                default=None,
            )
            if latest is None:
                raise ValueError("edited=True needs an earlier message from this user")
            return self.user_edits(chat, latest, text, entities=entities)
        target = None
        if reply_to is not None:
            target = state.live(reply_to)
            if target is None:
                raise ValueError(f"no message {reply_to} in chat {chat}")
            if thread_id is None and target.get("is_topic_message"):
                thread_id = target.get("message_thread_id")
        if thread_id is not None and thread_id not in state.topics:
            raise ValueError(f"no topic {thread_id} in chat {chat}; use create_topic")
        content = self._user_content(text, entities, photo, caption)
        message = self._post(state, user, thread_id=thread_id, reply_to=target, content=content)
        self._queue({"message": message})
        return copy.deepcopy(message)

    def user_presses(self, chat: int, user: JSON, message_id: int, data: str) -> str:
        """Queue the ``callback_query`` a press on an inline button of one of the bot's
        messages produces; returns the query id (see ``callback_answers``)."""
        message = self._state(chat).live(message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat}")
        buttons = [
            b.get("callback_data")
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
        ]
        if data not in buttons:
            raise ValueError(f"message {message_id} has no button with data {data!r}")
        query_id = str(next(self._update_ids))
        query = {
            "id": query_id,
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(message),
            "chat_instance": str(chat),
            "data": data,
        }
        self._queue({"callback_query": query})
        return query_id

    @property
    def callback_answers(self) -> dict[str, JSON]:
        """answerCallbackQuery calls by query id: what the presser saw (a toast/alert)."""
        return self._callback_answers

    async def _answer_callback_query(self, params: _Params) -> bool:
        query_id = params.text("callback_query_id")
        if not query_id:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._callback_answers[query_id] = {
            "text": params.text("text") or "",
            "show_alert": params.flag("show_alert"),
        }
        self._notify()
        return True

    def user_edits(
        self, chat: int, message_id: int, text: str, *, entities: list[JSON] | None = None
    ) -> JSON:
        message = self._state(chat).live(message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat}")
        key, entity_key = (
            ("caption", "caption_entities") if "photo" in message else ("text", "entities")
        )
        found = entities if entities is not None else detect_entities(text)
        message[key] = text
        message.pop(entity_key, None)
        if found:
            message[entity_key] = found
        message["edit_date"] = int(time.time())
        self._queue({"edited_message": message})
        return copy.deepcopy(message)

    def redeliver(self, update_id: int, *, as_new: bool = False) -> int:
        """Queue an update again, as after a restart before its offset was confirmed.

        The same update_id is dropped again by a poller whose offset is already past it,
        as on the real server; as_new=True queues a copy under a fresh update_id instead,
        the shape a duplicate delivery has from a live poller's point of view.
        """
        update = self._history.get(update_id)
        if update is None:
            raise ValueError(f"update {update_id} was never queued")
        if as_new:
            return self._queue({k: v for k, v in update.items() if k != "update_id"})
        if all(queued["update_id"] != update_id for queued in self._pending):
            self._pending.append(copy.deepcopy(update))
            self._pending.sort(key=lambda queued: int(queued["update_id"]))
            self._notify()
        return update_id

    async def deliver_webhook(self, url: str, update: JSON, secret_token: str | None = None) -> int:
        """POST an update to a webhook URL the way Telegram does; returns the HTTP status."""
        headers = {} if secret_token is None else {SECRET_HEADER: secret_token}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=update, headers=headers) as response,
        ):
            await response.read()
            return response.status

    # -- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with an error instead of running it."""
        parameters = {"retry_after": retry_after} if status == 429 else None
        text = description if description is not None else _default_description(status, retry_after)
        for _ in range(times):
            self._faults[method.lower()].append(ApiError(status, text, parameters))

    def drop_connections(self, n: int, *, method: str = "getUpdates") -> None:
        """Abort the connection of the next n requests of `method` without answering."""
        self._drops[method.lower()] += n

    # -- inspection ------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        if method is None:
            return list(self._calls)
        return [call for call in self._calls if call.method.lower() == method.lower()]

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by a getUpdates offset."""
        return copy.deepcopy(self._pending)

    @property
    def all_updates(self) -> list[JSON]:
        return copy.deepcopy(list(self._history.values()))

    @property
    def waiting_pollers(self) -> int:
        """getUpdates requests currently held open by long polling."""
        return self._waiting_pollers

    @property
    def webhook_url(self) -> str | None:
        return None if self._webhook is None else self._webhook.url

    @property
    def webhook_secret(self) -> str | None:
        return None if self._webhook is None else self._webhook.secret_token

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        return copy.deepcopy(self._commands.get(key, []))

    def message(self, chat_id: int, message_id: int) -> JSON | None:
        """Any stored message (user's or bot's), as it is now."""
        found = self._state(chat_id).live(message_id)
        return None if found is None else copy.deepcopy(found)

    def sent_messages(self, chat_id: int) -> list[SentMessage]:
        chat = self._state(chat_id)
        return [
            self._snapshot(chat, message_id, meta)
            for message_id, meta in sorted(chat.bot_messages.items())
            if message_id not in chat.deleted
        ]

    def transcript(self, chat_id: int) -> Transcript:
        chat = self._state(chat_id)
        return Transcript(
            chat_id=chat_id,
            messages=tuple(self.sent_messages(chat_id)),
            reactions=dict(chat.reactions),
            topics={thread_id: topic.name for thread_id, topic in chat.topics.items()},
            actions=tuple(chat.actions),
            drafts=tuple(chat.drafts),
        )

    @overload
    async def wait_for(
        self,
        what: str,
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> Call: ...

    @overload
    async def wait_for(
        self,
        what: Callable[[], _T | None],
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> _T: ...

    async def wait_for(
        self,
        what: str | Callable[[], _T | None],
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> Call | _T:
        """Wait for the `count`-th answered call of a method, or a predicate's truthy value.

        Calls are counted since the fake started, not since this call, so a request that
        finished before the test began waiting still counts (no race).
        """

        def by_method() -> Call | None:
            found = self.calls(what) if isinstance(what, str) else []
            return found[count - 1] if len(found) >= count else None

        predicate: Callable[[], Call | _T | None] = by_method if isinstance(what, str) else what
        try:
            async with asyncio.timeout(timeout):
                while not (result := predicate()):
                    await self._changed.wait()
                return result
        except TimeoutError:
            seen = ", ".join(call.method for call in self._calls[-15:]) or "none"
            label = repr(what) if isinstance(what, str) else "condition"
            msg = f"FakeTelegram: {label} not met within {timeout}s; last calls: {seen}"
            raise TimeoutError(msg) from None

    # -- HTTP plumbing ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return self._download(path.removeprefix("/file/bot"))
        token, _, method = path.removeprefix("/bot").partition("/")
        if not path.startswith("/bot"):
            token = method = ""
        params = _Params({}, {})
        try:
            params = await _read_params(request)
            if self._drops[method.lower()] > 0 and request.transport is not None:
                self._drops[method.lower()] -= 1
                self._record(method, params, 0, "connection dropped", None)
                request.transport.abort()
                return web.Response(status=500)  # never written: the connection is gone
            result = await self._dispatch(token, method, params)
        except ApiError as error:
            self._record(method, params, error.status, error.description, None)
            return web.json_response(_error_body(error), status=error.status)
        self._record(method, params, 200, None, result)
        return web.json_response({"ok": True, "result": result})

    async def _dispatch(self, token: str, method: str, params: _Params) -> Any:
        if ":" not in token or not method:
            raise ApiError(404, "Not Found")
        if token != self.token:
            raise ApiError(401, "Unauthorized")
        handler = self._methods.get(method.lower())
        if handler is None or (method.lower() == "sendmessagedraft" and not self.supports_drafts):
            raise ApiError(404, "Not Found")
        faults = self._faults[method.lower()]
        if faults:
            raise faults.popleft()
        return await handler(params)

    def _record(
        self, method: str, params: _Params, status: int, description: str | None, result: Any
    ) -> None:
        files = {name: upload.data for name, upload in params.files.items()}
        self._calls.append(
            Call(
                method=method,
                params=params.values,
                files=files,
                status=status,
                description=description,
                result=copy.deepcopy(result),
            )
        )
        self._notify()

    def _download(self, rest: str) -> web.Response:
        token, _, file_path = rest.partition("/")
        stored = next((f for f in self._files.values() if f.path == file_path), None)
        if token != self.token or stored is None:
            return web.json_response(_error_body(ApiError(404, "Not Found")), status=404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _hold(self, ready: Callable[[], bool], seconds: float) -> None:
        """Wait until ready() or `seconds` pass, whichever comes first (a long poll)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not ready():
                    await self._changed.wait()

    # -- shared state helpers --------------------------------------------------------------

    def _state(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise ValueError(f"unknown chat {chat_id}; create it with private_chat/group first")
        return chat

    def _chat(self, params: _Params) -> _Chat:
        raw = params.values.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            chat_id: int | None = self._usernames.get(raw[1:].lower())
        else:
            try:
                chat_id = int(raw)
            except (TypeError, ValueError):
                chat_id = None
        chat = self._chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _has_topics(self, chat: _Chat) -> bool:
        if chat.info["type"] == "private":
            return self.has_topics_enabled
        return bool(chat.info.get("is_forum"))

    def _thread(self, chat: _Chat, thread_id: int | None) -> int | None:
        if thread_id is not None and thread_id not in chat.topics:
            raise bad_request("message thread not found")
        return thread_id

    def _queue(self, payload: JSON) -> int:
        update_id = next(self._update_ids)
        update = {"update_id": update_id, **copy.deepcopy(payload)}
        self._history[update_id] = update
        self._pending.append(copy.deepcopy(update))
        self._notify()
        return update_id

    def _post(
        self,
        chat: _Chat,
        sender: JSON,
        *,
        thread_id: int | None,
        reply_to: JSON | None,
        content: JSON,
    ) -> JSON:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        message: JSON = {"message_id": message_id}
        if thread_id is not None:
            message["message_thread_id"] = thread_id
        message.update({"from": sender, "chat": chat.info, "date": int(time.time())})
        if reply_to is None and thread_id is not None and chat.info.get("is_forum"):
            # Forum quirk: a message in a topic "replies" to the topic's creation message.
            reply_to = chat.topics[thread_id].created
        if reply_to is not None:
            message["reply_to_message"] = {
                key: value for key, value in reply_to.items() if key != "reply_to_message"
            }
        message.update(content)
        if thread_id is not None:
            message["is_topic_message"] = True
        chat.messages[message_id] = message
        return message

    def _open_topic(self, chat: _Chat, name: str, icon_color: int, creator: JSON) -> int:
        created = {"forum_topic_created": {"name": name, "icon_color": icon_color}}
        message = self._post(chat, creator, thread_id=None, reply_to=None, content=created)
        thread_id = int(message["message_id"])
        message["message_thread_id"] = thread_id
        message["is_topic_message"] = True
        by_bot = creator["id"] == self.bot_id
        chat.topics[thread_id] = _Topic(name, icon_color, message, by_bot)
        return thread_id

    def _user_content(
        self, text: str, entities: list[JSON] | None, photo: bytes | None, caption: str | None
    ) -> JSON:
        if photo is None:
            if not text:
                raise ValueError("a text message needs text")
            found = entities if entities is not None else detect_entities(text)
            return {"text": text, **({"entities": found} if found else {})}
        content: JSON = {"photo": self._photo_sizes(photo)}
        body = caption if caption is not None else text
        if body:
            content["caption"] = body
            found = entities if entities is not None else detect_entities(body)
            if found:
                content["caption_entities"] = found
        return content

    def _store_file(
        self, data: bytes, folder: str, file_name: str | None, mime_type: str | None
    ) -> _StoredFile:
        number = next(self._file_ids)
        suffix = "." + file_name.rpartition(".")[2] if file_name and "." in file_name else ""
        if folder == "photos":
            suffix = ".jpg"
        stored = _StoredFile(
            file_id=f"BQACAgIAAxkBAAI{number:06d}",
            unique_id=f"AgAD{number:06d}",
            path=f"{folder}/file_{number}{suffix}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def _photo_sizes(self, data: bytes) -> list[JSON]:
        sizes = []
        for width, height in ((90, 68), (1280, 960)):
            stored = self._store_file(data, "photos", None, "image/jpeg")
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.unique_id,
                    "file_size": len(data),
                    "width": width,
                    "height": height,
                }
            )
        return sizes

    def _snapshot(self, chat: _Chat, message_id: int, meta: _BotMessage) -> SentMessage:
        message = chat.messages[message_id]
        text_key = "text" if meta.kind == "text" else "caption"
        entity_key = "entities" if meta.kind == "text" else "caption_entities"
        thread = message.get("message_thread_id")
        return SentMessage(
            chat_id=chat.id,
            message_id=message_id,
            kind=meta.kind,
            text=str(message.get(text_key, "")),
            source=meta.source,
            parse_mode=meta.parse_mode,
            entities=tuple(copy.deepcopy(message.get(entity_key, []))),
            thread_id=None if thread is None else int(thread),
            reply_to=meta.reply_to,
            reply_markup=copy.deepcopy(message.get("reply_markup")),
            edits=meta.edits,
        )

    # -- methods: bot, updates, webhook, commands ------------------------------------------

    async def _get_me(self, params: _Params) -> JSON:
        return self.bot_user(full=True)

    def _deliverable(self) -> list[JSON]:
        allowed = self._allowed_updates
        if not allowed:
            return self._pending
        return [u for u in self._pending if any(kind in u for kind in allowed)]

    def _confirm(self, offset: int | None) -> None:
        if offset is None or offset == 0:
            return
        if offset > 0:
            self._pending = [u for u in self._pending if int(u["update_id"]) >= offset]
        else:
            self._pending = self._pending[offset:]

    async def _get_updates(self, params: _Params) -> list[JSON]:
        if self._webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        limit = min(max(params.integer("limit") or 100, 1), 100)
        timeout = max(params.number("timeout") or 0.0, 0.0)
        allowed = params.obj("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None
        self._confirm(params.integer("offset"))
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()  # an older poll still waiting must now answer with Conflict
        if timeout > 0 and not self._deliverable():
            self._waiting_pollers += 1
            self._notify()
            try:
                await self._hold(
                    lambda: (
                        self._closing
                        or generation != self._poll_generation
                        or bool(self._deliverable())
                    ),
                    timeout,
                )
            finally:
                self._waiting_pollers -= 1
        if generation != self._poll_generation:
            raise ApiError(409, _default_description(409, 0))
        return copy.deepcopy(self._deliverable()[:limit])

    async def _set_webhook(self, params: _Params) -> bool:
        url = params.text("url") or ""
        if params.flag("drop_pending_updates"):
            self._pending.clear()
        if not url:
            self._webhook = None
            return True
        if not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.text("secret_token")
        if secret is not None and not (
            0 < len(secret) <= 256
            and all(c.isascii() and (c.isalnum() or c in "_-") for c in secret)
        ):
            raise bad_request("secret token contains unallowed characters")
        self._webhook = _Webhook(url, secret, params.integer("max_connections") or 40)
        allowed = params.obj("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed] or None
        self._notify()
        return True

    async def _delete_webhook(self, params: _Params) -> bool:
        if params.flag("drop_pending_updates"):
            self._pending.clear()
        self._webhook = None
        return True

    async def _get_webhook_info(self, params: _Params) -> JSON:
        info: JSON = {
            "url": self._webhook.url if self._webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook is not None:
            info["max_connections"] = self._webhook.max_connections
            if self._allowed_updates:
                info["allowed_updates"] = list(self._allowed_updates)
        return info

    def _commands_key(self, params: _Params) -> tuple[str, str]:
        scope = params.obj("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.text("language_code") or ""

    async def _set_my_commands(self, params: _Params) -> bool:
        commands = params.obj("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        stored = []
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            description = str(command.get("description", "")) if isinstance(command, dict) else ""
            valid_name = 0 < len(name) <= 32 and all(
                c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in name
            )
            if not valid_name or not 0 < len(description) <= 256:
                raise bad_request("BOT_COMMAND_INVALID")
            stored.append({"command": name, "description": description})
        self._commands[self._commands_key(params)] = stored
        return True

    async def _get_my_commands(self, params: _Params) -> list[JSON]:
        return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: _Params) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    # -- methods: messages -----------------------------------------------------------------

    def _placement(self, chat: _Chat, params: _Params) -> tuple[int | None, JSON | None]:
        """Thread and reply target of an outgoing message, validated like the server."""
        thread_id = params.integer("message_thread_id")
        reply = params.obj("reply_parameters")
        if reply is None and params.integer("reply_to_message_id") is not None:
            reply = {
                "message_id": params.integer("reply_to_message_id"),
                "allow_sending_without_reply": params.flag("allow_sending_without_reply"),
            }
        target = None
        if isinstance(reply, dict):
            target = chat.live(int(reply.get("message_id") or 0))
            if target is None and not reply.get("allow_sending_without_reply"):
                raise bad_request("message to be replied not found")
            if target is not None and thread_id is None and target.get("is_topic_message"):
                thread_id = target.get("message_thread_id")
        return self._thread(chat, thread_id), target

    def _bot_post(
        self, chat: _Chat, params: _Params, content: JSON, kind: MessageKind, source: str
    ) -> JSON:
        thread_id, target = self._placement(chat, params)
        markup = params.obj("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            content["reply_markup"] = markup
        message = self._post(
            chat, self.bot_user(), thread_id=thread_id, reply_to=target, content=content
        )
        reply_to = None if target is None else int(target["message_id"])
        parse_mode = params.text("parse_mode") or None
        chat.bot_messages[int(message["message_id"])] = _BotMessage(
            kind, source, parse_mode, reply_to
        )
        return message

    async def _send_message(self, params: _Params) -> JSON:
        chat = self._chat(params)
        source = params.text("text") or ""
        text, entities = render_text(source, params.text("parse_mode"), params.obj("entities"))
        check_length(text, MAX_TEXT, empty="message text is empty", too_long="message is too long")
        content: JSON = {"text": text, **({"entities": entities} if entities else {})}
        return self._bot_post(chat, params, content, "text", source)

    async def _edit_message_text(self, params: _Params) -> JSON:
        if params.values.get("inline_message_id"):
            raise bad_request("message to edit not found")
        chat = self._chat(params)
        message_id = params.required_int("message_id")
        message = chat.live(message_id)
        meta = chat.bot_messages.get(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if meta is None:
            raise bad_request("message can't be edited")
        if meta.kind != "text":
            raise bad_request("there is no text in the message to edit")
        source = params.text("text") or ""
        text, entities = render_text(source, params.text("parse_mode"), params.obj("entities"))
        check_length(text, MAX_TEXT, empty="message text is empty", too_long="message is too long")
        markup = params.obj("reply_markup")
        markup = markup if isinstance(markup, dict) and "inline_keyboard" in markup else None
        current = (message["text"], message.get("entities", []), message.get("reply_markup"))
        if current == (text, entities, markup):
            raise bad_request(NOT_MODIFIED)
        message["text"] = text
        for key, value in (("entities", entities), ("reply_markup", markup)):
            message.pop(key, None)
            if value:
                message[key] = value
        message["edit_date"] = int(time.time())
        meta.source, meta.parse_mode = source, params.text("parse_mode") or None
        meta.edits += 1
        return message

    async def _send_message_draft(self, params: _Params) -> bool:
        chat = self._chat(params)
        if chat.info["type"] != "private":
            raise bad_request("TEXTDRAFT_PEER_INVALID")
        draft_id = params.required_int("draft_id")
        if draft_id == 0:
            raise bad_request("draft_id must be non-zero")
        source = params.text("text") or ""
        parse_mode = params.text("parse_mode") or None
        text, _ = render_text(source, parse_mode, params.obj("entities"))
        check_length(text, MAX_TEXT, empty=None, too_long="message is too long")
        thread_id = self._thread(chat, params.integer("message_thread_id"))
        chat.drafts.append(
            Draft(
                chat_id=chat.id,
                draft_id=draft_id,
                text=text,
                source=source,
                parse_mode=parse_mode,
                thread_id=thread_id,
            )
        )
        return True

    async def _send_chat_action(self, params: _Params) -> bool:
        chat = self._chat(params)
        action = params.text("action") or ""
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        thread_id = self._thread(chat, params.integer("message_thread_id"))
        chat.actions.append(ChatAction(chat_id=chat.id, action=action, thread_id=thread_id))
        return True

    async def _set_message_reaction(self, params: _Params) -> bool:
        chat = self._chat(params)
        message_id = params.required_int("message_id")
        if chat.live(message_id) is None:
            raise bad_request("MESSAGE_ID_INVALID")
        reaction = params.obj("reaction") or []
        if not isinstance(reaction, list):
            raise bad_request("can't parse reaction types JSON object")
        chosen = []
        for item in reaction:
            # Custom emoji need the chat to allow them, which the fake does not model.
            emoji = item.get("emoji") if isinstance(item, dict) else None
            if item.get("type") != "emoji" or emoji not in BOT_REACTIONS:
                raise bad_request("REACTION_INVALID")
            chosen.append(str(emoji))
        if chosen and not chat.reactions_allowed:
            raise bad_request("REACTION_INVALID")
        if len(chosen) > 1:
            raise bad_request("REACTIONS_TOO_MANY")
        chat.reactions.pop(message_id, None)
        if chosen:
            chat.reactions[message_id] = tuple(chosen)
        return True

    async def _delete_message(self, params: _Params) -> bool:
        chat = self._chat(params)
        message_id = params.required_int("message_id")
        if chat.live(message_id) is None:
            raise bad_request("message to delete not found")
        chat.deleted.add(message_id)
        return True

    # -- methods: topics -------------------------------------------------------------------

    def _topic_name(self, raw: str) -> str:
        name = raw.strip()
        if not name:
            raise bad_request("title must be non-empty")
        if len(name) > MAX_TOPIC_NAME:
            if self.reject_long_topic_names:
                raise bad_request("TOPIC_TITLE_INVALID")
            name = name[:MAX_TOPIC_NAME]
        return name

    async def _create_forum_topic(self, params: _Params) -> JSON:
        chat = self._chat(params)
        if not self._has_topics(chat):
            raise bad_request("the chat is not a forum")
        if chat.info["type"] != "private" and not chat.can_manage_topics:
            raise bad_request("not enough rights to manage topics")
        name = self._topic_name(params.text("name") or "")
        icon_color = params.integer("icon_color") or DEFAULT_ICON_COLOR
        thread_id = self._open_topic(chat, name, icon_color, self.bot_user())
        return {"message_thread_id": thread_id, "name": name, "icon_color": icon_color}

    async def _edit_forum_topic(self, params: _Params) -> bool:
        chat = self._chat(params)
        if not self._has_topics(chat):
            raise bad_request("the chat is not a forum")
        topic = chat.topics.get(params.required_int("message_thread_id"))
        if topic is None:
            raise bad_request("message thread not found")
        private = chat.info["type"] == "private"
        if not private and not chat.can_manage_topics and not topic.by_bot:
            raise bad_request("not enough rights to manage topics")
        raw_name = params.text("name") or ""
        if not raw_name and params.text("icon_custom_emoji_id") is None:
            return True
        name = self._topic_name(raw_name) if raw_name else topic.name
        if name == topic.name:
            raise bad_request("TOPIC_NOT_MODIFIED")
        topic.name = name
        thread_id = int(topic.created["message_id"])
        edited = {"forum_topic_edited": {"name": name}}
        self._post(chat, self.bot_user(), thread_id=thread_id, reply_to=None, content=edited)
        return True

    # -- methods: files --------------------------------------------------------------------

    async def _get_file(self, params: _Params) -> JSON:
        stored = self._files.get(params.text("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.data),
            "file_path": stored.path,
        }

    def _input_file(self, params: _Params, name: str, folder: str) -> _StoredFile:
        value = params.text(name)
        upload = params.files.get(name)
        if value and value.startswith("attach://"):
            upload = params.files.get(value.removeprefix("attach://"))
        if upload is not None:
            return self._store_file(upload.data, folder, upload.filename, upload.mime_type)
        if value in self._files:
            return self._files[value]
        if value and value.startswith(("http://", "https://")):
            raise bad_request("failed to get HTTP URL content")
        if value:
            raise bad_request("wrong file identifier/HTTP URL specified")
        raise bad_request(f"there is no {name} in the request")

    def _caption(self, params: _Params) -> tuple[str, JSON]:
        source = params.text("caption") or ""
        text, entities = render_text(
            source, params.text("parse_mode"), params.obj("caption_entities")
        )
        check_length(text, MAX_CAPTION, empty=None, too_long="message caption is too long")
        content: JSON = {}
        if text:
            content["caption"] = text
        if entities:
            content["caption_entities"] = entities
        return source, content

    async def _send_photo(self, params: _Params) -> JSON:
        chat = self._chat(params)
        stored = self._input_file(params, "photo", "photos")
        source, content = self._caption(params)
        content["photo"] = self._photo_sizes(stored.data)
        return self._bot_post(chat, params, content, "photo", source)

    async def _send_document(self, params: _Params) -> JSON:
        chat = self._chat(params)
        stored = self._input_file(params, "document", "documents")
        source, content = self._caption(params)
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.data),
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        content["document"] = document
        return self._bot_post(chat, params, content, "document", source)
