"""The Telegram adapter (python-telegram-bot's ``Bot``, no ``Application``).

How the pieces interact. ``run`` checks the token with getMe, publishes the command menu,
then either long-polls (its own getUpdates loop: a batch is handed to the sink, one lane
per chat so a chat's messages stay in order, and only then is the offset confirmed by the
next poll) or, in webhook mode, waits while ``web_routes``' POST /telegram/webhook feeds
the same dispatch. ``telegram_inbound`` turns each update into an ``InboundMessage``;
images are downloaded here before the hand-over. The gateway answers through send / edit
/ typing / react / rename; private chats stream through a draft (``telegram/draft.py``,
sendMessageDraft) when the server has it. Library exceptions become ``adapters.errors`` in
``telegram/errors.py`` only.
"""

from __future__ import annotations

import os

# PTB 22 warns when reading RetryAfter.retry_after as a number; opt in to timedeltas
# before the library is imported so no warning is ever raised.
os.environ.setdefault("PTB_TIMEDELTA", "true")

import asyncio
import dataclasses
import datetime as dtm
import hmac
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import httpx
from aiohttp import web
from telegram import Bot, BotCommand, ReactionTypeEmoji, ReplyParameters, Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from adapters.approval import ApprovalPrompt
from adapters.base import (
    ChatTarget,
    InboundMessage,
    InboundSink,
    Media,
    NativeStream,
    SentMessage,
    StatusReporting,
    StatusTracker,
)
from adapters.common.commands import COMMANDS
from adapters.common.endpoints import TELEGRAM_BASE_FILE_URL, TELEGRAM_BASE_URL
from adapters.common.identity import BotIdentity
from adapters.common.sizes import MAX_DOWNLOAD
from adapters.errors import (
    CredentialsRejected,
    MessageNotModified,
    NotAllowed,
)
from adapters.telegram.approval import answer_press, send_question
from adapters.telegram.draft import Drafts
from adapters.telegram.errors import TOKEN_FIX, delivery_errors, retry_seconds
from adapters.telegram.inbound import (
    PLATFORM,
    Converted,
    convert_update,
    platform_message_id,
)
from adapters.telegram.media import download
from adapters.telegram.webhook import parse_update
from adapters.text.format import TextFormat
from adapters.text.telegram_html import telegram_length, to_telegram_html
from runtime.backoff import Backoff, log_retry
from runtime.providers.http_pool import lean_pools

log = logging.getLogger(__name__)

MAX_TEXT: Final = 4096
MAX_TOPIC_NAME: Final = 128
WEBHOOK_PATH: Final = "/telegram/webhook"
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES: Final = ("message", "edited_message", "callback_query")
# Telegram takes about 30 messages a second per bot, so more connections only buy
# handshakes: a burst of replies queues for a connection (up to POOL_WAIT seconds)
# instead of opening hundreds at once.
POOL_SIZE: Final = 16
POOL_WAIT: Final = 30.0


class LeanRequest(HTTPXRequest):
    """PTB's httpx request; its connection pool asks idle connections whether the server
    closed them the cheap way (``runtime.providers.http_pool``)."""

    def _build_client(self) -> httpx.AsyncClient:
        return lean_pools(super()._build_client())


@dataclass(frozen=True, kw_only=True, slots=True)
class TelegramSettings:
    token: str
    base_url: str = TELEGRAM_BASE_URL
    base_file_url: str = TELEGRAM_BASE_FILE_URL
    mode: Literal["polling", "webhook"] = "polling"
    webhook_secret: str = ""
    webhook_url: str | None = None  # setWebhook is called only when this is set
    respond_all: bool = False  # groups: answer unaddressed messages (download their media)
    poll_timeout: int = 30  # seconds a getUpdates long poll is held open
    retry_base: float = 1.0  # first backoff delay after a network error
    retry_max: float = 30.0
    max_download: int = MAX_DOWNLOAD  # larger images become a note


def _thread(target: ChatTarget) -> int | None:
    return None if target.thread_id is None else int(target.thread_id)


class TelegramAdapter(StatusReporting):
    name = PLATFORM
    text_format = TextFormat(limit=MAX_TEXT, markup=to_telegram_html, counter=telegram_length)

    def __init__(self, settings: TelegramSettings) -> None:
        if not settings.token:
            raise CredentialsRejected(TOKEN_FIX)
        self.settings = settings
        self.bot = Bot(
            settings.token,
            base_url=settings.base_url,
            base_file_url=settings.base_file_url,
            request=LeanRequest(connection_pool_size=POOL_SIZE, pool_timeout=POOL_WAIT),
        )
        self._connection = StatusTracker(PLATFORM)
        self._backoff_policy = Backoff(base=settings.retry_base, cap=settings.retry_max)
        self._sink: InboundSink | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self.me: BotIdentity | None = None
        self._drafts = Drafts(self.bot)
        self._rename_refused: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, sink: InboundSink) -> None:
        self._connection.set("starting")
        try:
            self.me = await self._connect()
            self._sink = sink
            await self._announce_commands()
            if self.settings.mode == "webhook":
                await self._serve_webhook()
            else:
                await self._poll_until_stopped()
        finally:
            self._sink = None
            self._connection.set("stopped")
            await self.bot.shutdown()

    async def _connect(self) -> BotIdentity:
        for attempt in itertools.count(1):
            try:
                await self.bot.initialize()
            except InvalidToken:
                # from None: the library's message repeats the token.
                raise CredentialsRejected(TOKEN_FIX) from None
            except TelegramError as exc:
                await self._backoff("getMe", attempt, exc)
                continue
            user = self.bot.bot
            return BotIdentity(
                user_id=str(user.id),
                name=user.username or "",
                has_topics_enabled=bool(user.has_topics_enabled),
            )
        raise AssertionError("unreachable")

    async def _backoff(
        self, method: str, attempt: int, exc: Exception, *, at_least: float = 0.0
    ) -> None:
        delay = self._backoff_policy.delay(attempt, at_least=at_least)
        self._connection.set("reconnecting", f"{method} failed: {type(exc).__name__}")
        reason = f"{type(exc).__name__}: {exc}"
        log_retry(log, f"telegram {method}", reason, attempt=attempt, delay=delay)
        await asyncio.sleep(delay)

    def _connected(self) -> None:
        self._connection.set("connected", f"as @{self.me.name}" if self.me else "")

    async def _announce_commands(self) -> None:
        commands = [BotCommand(name, info.summary) for name, info in COMMANDS.items()]
        try:
            await self.bot.set_my_commands(commands)
        except TelegramError as exc:  # a missing menu is cosmetic: go on serving
            log.warning("telegram setMyCommands failed: %s", exc)

    async def stop_intake(self) -> None:
        """No more updates: webhook posts get 503 (Telegram redelivers them later) and the
        poll in flight is cancelled, so its batch is never confirmed by a next offset."""
        self._sink = None
        if self._poll_task is not None:
            self._poll_task.cancel()

    # -- polling -------------------------------------------------------------------------

    async def _poll_until_stopped(self) -> None:
        self._poll_task = asyncio.create_task(self._poll(), name="telegram-poll")
        try:
            await asyncio.wait({self._poll_task})
        finally:
            self._poll_task.cancel()
        if not self._poll_task.cancelled():
            self._poll_task.result()  # a poll failure goes to the supervisor
        await asyncio.get_running_loop().create_future()  # intake stopped: until cancelled

    async def _poll(self) -> None:
        try:
            await self.bot.delete_webhook()  # getUpdates answers 409 while a webhook is set
        except TelegramError as exc:
            log.warning("telegram deleteWebhook failed: %s", exc)
        offset: int | None = None
        attempt = 0
        while True:
            # A short first poll tells at once whether polling works (readiness).
            timeout = self.settings.poll_timeout if self.state == "connected" else 0
            try:
                updates = await self.bot.get_updates(
                    offset=offset,
                    timeout=dtm.timedelta(seconds=timeout),
                    allowed_updates=ALLOWED_UPDATES,
                )
            except InvalidToken:
                raise CredentialsRejected(TOKEN_FIX) from None
            except TelegramError as exc:
                attempt += 1
                wait = retry_seconds(exc.retry_after) if isinstance(exc, RetryAfter) else 0.0
                await self._backoff("getUpdates", attempt, exc, at_least=wait)
                continue
            attempt = 0
            self._connected()
            if updates:
                await self._dispatch_batch(updates)
                offset = updates[-1].update_id + 1

    async def _dispatch_batch(self, updates: Sequence[Update]) -> None:
        """Hand the whole batch over at once: the gateway queues each message in its
        chat's lane (in order) and records them in one transaction, so the next poll,
        which confirms this batch to Telegram, waits on nothing but that."""
        await asyncio.gather(*(self.dispatch(update) for update in updates))

    async def dispatch(self, update: Update) -> None:
        """Convert one update and hand it to the sink; never raises (one bad update must
        not stop the others)."""
        me, sink = self.me, self._sink
        if me is None or sink is None:
            return
        try:
            if update.callback_query is not None:
                await answer_press(self.bot, update.callback_query, sink)
                return
            converted = convert_update(update, me)
            if converted is not None:
                await sink.handle(self._with_media(converted))
        except Exception:
            log.exception("telegram update %s could not be handled", update.update_id)

    def _with_media(self, converted: Converted) -> InboundMessage:
        message = converted.message
        wanted = message.is_direct or message.addressed or self.settings.respond_all
        if not converted.downloads or not wanted:
            return message

        async def fetch() -> Media:
            return await download(self.bot, converted, self.settings.max_download)

        return dataclasses.replace(message, media=fetch)

    # -- webhook -------------------------------------------------------------------------

    async def _serve_webhook(self) -> None:
        url = self.settings.webhook_url
        if url:
            with delivery_errors():
                await self.bot.set_webhook(
                    url, secret_token=self.settings.webhook_secret, allowed_updates=ALLOWED_UPDATES
                )
        self._connected()
        await asyncio.get_running_loop().create_future()  # until cancelled

    def web_routes(self) -> Sequence[web.RouteDef]:
        if self.settings.mode != "webhook":
            return []
        return [web.post(WEBHOOK_PATH, self._on_webhook)]

    async def _on_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        expected = self.settings.webhook_secret.encode()
        if not expected or not hmac.compare_digest(given, expected):
            log.warning("telegram webhook call refused: wrong or missing secret token")
            return web.Response(status=403, text="forbidden")
        if self._sink is None:
            return web.Response(status=503, text="not ready")  # Telegram retries later
        try:
            update = parse_update(await request.json(), self.bot)
        except ValueError:  # not JSON, or not UTF-8
            update = None
        if update is None:
            log.warning("telegram webhook call refused: the body is not a well-formed update")
            return web.Response(status=400, text="not an update")
        await self.dispatch(update)
        return web.Response(text="ok")

    # -- outbound ------------------------------------------------------------------------

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        reply = None
        if target.reply_to is not None:
            reply = ReplyParameters(int(target.reply_to), allow_sending_without_reply=True)
        with delivery_errors():
            sent = await self.bot.send_message(
                chat_id=int(target.chat_id),
                text=text,
                parse_mode=ParseMode.HTML if markup else None,
                message_thread_id=_thread(target),
                reply_parameters=reply,
            )
        return SentMessage(target=target, message_id=str(sent.message_id))

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        with delivery_errors():
            await self.bot.edit_message_text(
                text,
                chat_id=int(message.target.chat_id),
                message_id=int(message.message_id),
                parse_mode=ParseMode.HTML if markup else None,
            )

    async def ask_approval(self, target: ChatTarget, prompt: ApprovalPrompt) -> SentMessage:
        with delivery_errors():
            message_id = await send_question(self.bot, target, prompt)
        return SentMessage(target=target, message_id=message_id)

    async def settle_approval(self, message: SentMessage, text: str) -> None:
        """Replace the question by its outcome; the edit drops the keyboard."""
        with delivery_errors():
            await self.bot.edit_message_text(
                text, chat_id=int(message.target.chat_id), message_id=int(message.message_id)
            )

    async def delete(self, message: SentMessage) -> None:
        with delivery_errors():
            await self.bot.delete_message(int(message.target.chat_id), int(message.message_id))

    async def typing(self, target: ChatTarget, active: bool) -> None:
        if not active:
            return  # Telegram clears the indicator itself when the reply lands
        with delivery_errors():
            await self.bot.send_chat_action(
                int(target.chat_id), ChatAction.TYPING, message_thread_id=_thread(target)
            )

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        with delivery_errors():
            try:
                await self.bot.set_message_reaction(
                    int(target.chat_id),
                    platform_message_id(message_id),
                    reaction=[ReactionTypeEmoji(emoji)],
                )
            except BadRequest as exc:
                raise NotAllowed(f"reaction refused: {exc.message}") from exc

    async def rename(self, target: ChatTarget, title: str) -> None:
        """Name the forum or private topic; other chats have no name of ours to set."""
        name = title.strip()[:MAX_TOPIC_NAME]
        if target.thread_id is None or not name:
            return
        try:
            with delivery_errors():
                await self.bot.edit_forum_topic(
                    int(target.chat_id), int(target.thread_id), name=name
                )
        except MessageNotModified:
            return
        except NotAllowed as exc:
            if target.chat_id not in self._rename_refused:
                self._rename_refused.add(target.chat_id)
                log.warning(
                    "telegram cannot rename topics in chat %s (%s): give the bot the "
                    "'Manage topics' admin right",
                    target.chat_id,
                    exc,
                )
            raise

    @property
    def drafts_supported(self) -> bool:
        return self._drafts.supported

    def native_stream(self, target: ChatTarget) -> NativeStream | None:
        if not self._drafts.supported or target.extra.get("chat_type") != "private":
            return None
        return self._drafts.stream(int(target.chat_id), _thread(target), self.text_format)
