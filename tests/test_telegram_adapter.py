"""The Telegram adapter end to end: a real Gateway, python-telegram-bot, the fake Bot API."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.base import ChatTarget, InboundMessage
from adapters.errors import (
    MarkupRejected,
    MessageNotModified,
    MessageTooLong,
    NotAllowed,
    RateLimited,
)
from adapters.telegram.adapter import TelegramAdapter, TelegramSettings
from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.config_loader import load_config
from gateway.delivery import DeliveryOptions
from runtime.history import UserEntry
from tests.fakes.scripted_provider import Gate, ScriptedProvider, Text
from tests.fakes.telegram_api import FakeTelegram
from tests.gateway_config import (
    TelegramRun,
    running_telegram,
    telegram_section,
    write_gateway_toml,
)
from tests.runtime_helpers import wait_for

JSON = dict[str, Any]
BOT = "@gateway_test_bot"
SECRET = "hook-secret_42"
TIMEOUT = 5.0


@pytest.fixture
def fake(telegram: FakeTelegram) -> FakeTelegram:
    """This file's name for the fake Bot API (``telegram`` in conftest)."""
    return telegram


@pytest.fixture
def alice(fake: FakeTelegram) -> JSON:
    return fake.make_user("Alice", username="alice_w")


def load(tmp_path: Path, fake: FakeTelegram, *, extra: str = "", token: str = "") -> GatewayConfig:
    path = write_gateway_toml(
        tmp_path,
        telegram_section(fake, extra),
        agent_keys='model = "echo"',
        provider_keys="word_delay = 0",
    )
    return load_config(path, {"TELEGRAM_BOT_TOKEN": token or fake.token})


def running(
    tmp_path: Path, fake: FakeTelegram, *, extra: str = "", **overrides: Any
) -> AbstractAsyncContextManager[TelegramRun]:
    return running_telegram(load(tmp_path, fake, extra=extra), **overrides)


def texts(fake: FakeTelegram, chat: int) -> list[str]:
    return [message.text for message in fake.sent_messages(chat)]


def user_texts(provider: ScriptedProvider, index: int = -1) -> list[str]:
    return [e.text for e in provider.requests[index].messages if isinstance(e, UserEntry)]


# -- private chats -------------------------------------------------------------------------


async def test_private_chat_streams_a_draft_then_sends_the_reply(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        ready, detail = r.gateway.readiness()
        assert ready, detail
        gate = Gate()
        r.provider.script(Text("**Hello** "), gate, Text("world"))
        fake.user_sends(chat, alice, "hi")
        drafts = await fake.wait_for(lambda: fake.transcript(chat).drafts)
        # The draft is formatted like the message will be, not raw "**".
        assert (drafts[0].text, drafts[0].parse_mode) == ("Hello", "HTML")
        # The draft shows at once: no typing call (the floor is draft + final send).
        assert fake.transcript(chat).actions == ()
        assert texts(fake, chat) == []  # nothing sent while the draft streams
        gate.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["Hello world"])
        transcript = fake.transcript(chat)
        assert len({d.draft_id for d in transcript.drafts}) == 1  # one draft per reply
        [final] = fake.sent_messages(chat)
        assert final.reply_to is None
        assert final.parse_mode == "HTML"  # the real message is rendered markup
        assert [(e["type"], e["offset"], e["length"]) for e in final.entities] == [("bold", 0, 5)]
        assert user_texts(r.provider) == ["hi"]


async def test_without_drafts_the_reply_is_sent_and_edited_as_html(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    fake.supports_drafts = False
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        held = Gate()
        r.provider.script(Text("one"), held, Text(" two"))
        fake.user_sends(chat, alice, "first")  # this reply finds out: 404 on drafts
        await fake.wait_for(lambda: texts(fake, chat) == ["one"])  # sent, then edited
        assert not r.adapter.drafts_supported
        held.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["one two"])
        gate = Gate()
        r.provider.script(Text("**Hello** "), gate, Text("world"))
        fake.user_sends(chat, alice, "second")
        await fake.wait_for(lambda: texts(fake, chat) == ["one two", "Hello"])
        gate.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["one two", "Hello world"])
        final = fake.sent_messages(chat)[-1]
        assert final.parse_mode == "HTML"
        assert final.edits >= 1
        assert [(e["type"], e["offset"], e["length"]) for e in final.entities] == [("bold", 0, 5)]


async def test_a_long_reply_previews_its_tail_then_is_split_at_4096(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    paragraph = ("lorem ipsum " * 30).strip()
    body = "\n\n".join([paragraph] * 14)  # about 5000 characters
    async with running(tmp_path, fake) as r:
        gate = Gate()
        r.provider.script(Text(body), gate, Text("\n\nThe end."))
        fake.user_sends(chat, alice, "tell me a lot")
        [draft] = await fake.wait_for(lambda: fake.transcript(chat).drafts)
        assert len(draft.text) <= 4096
        assert body.endswith(draft.text)  # the draft shows the newest part
        gate.release()
        await fake.wait_for(lambda: len(texts(fake, chat)) == 2)
        sent = texts(fake, chat)
        assert all(len(text) <= 4096 for text in sent)
        assert "\n\n".join(sent) == body + "\n\nThe end."


async def test_private_topics_are_their_own_conversations_and_get_renamed(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    fake.has_topics_enabled = True
    chat = fake.private_chat(alice)
    thread = fake.create_topic(chat, "New chat", creator=alice)
    async with running(tmp_path, fake) as r:
        assert r.adapter.me is not None
        assert r.adapter.me.has_topics_enabled
        gate = Gate()  # a reply still streaming shows a draft
        r.provider.script(Text("o"), gate, Text("k"))
        fake.user_sends(chat, alice, "plan a trip", thread_id=thread)
        await fake.wait_for(lambda: fake.transcript(chat).drafts)
        gate.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        assert fake.sent_messages(chat)[0].thread_id == thread
        assert {d.thread_id for d in fake.transcript(chat).drafts} == {thread}
        await fake.wait_for(lambda: fake.transcript(chat).topics[thread] == "Scripted Title")
        conv = await r.gateway.runtime.conversation_for(  # type: ignore[union-attr]
            "bot", f"telegram:chat:{chat}:topic:{thread}", topic=f"{chat}:{thread}"
        )
        assert conv.title == "Scripted Title"


# -- groups and forum topics ----------------------------------------------------------------


async def test_groups_answer_mentions_replies_to_the_bot_and_text_mentions(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.group()
    async with running(tmp_path, fake) as r:
        fake.user_sends(chat, alice, "just chatting among humans")
        asked = fake.user_sends(chat, alice, f"{BOT} hello")
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        first = fake.sent_messages(chat)[0]
        assert first.reply_to == asked["message_id"]
        assert user_texts(r.provider) == ["hello"]  # the leading mention is stripped
        fake.user_sends(chat, alice, "and more", reply_to=first.message_id)
        await fake.wait_for(lambda: texts(fake, chat) == ["ok", "ok"])
        named = [{"type": "text_mention", "offset": 0, "length": 7, "user": fake.bot_user()}]
        fake.user_sends(chat, alice, "Gateway, last one", entities=named)
        await fake.wait_for(lambda: texts(fake, chat) == ["ok", "ok", "ok"])
        # one shared conversation for the group, and the chatter was never answered
        assert user_texts(r.provider) == ["hello", "and more", "Gateway, last one"]
        assert fake.transcript(chat).drafts == ()


async def test_forum_topic_is_a_shared_conversation_renamed_after_the_first_exchange(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.supergroup(forum=True)
    thread = fake.create_topic(chat, "New topic")
    bob = fake.make_user("Bob")
    async with running(tmp_path, fake) as r:
        # Typing at once, to see where it goes (by default only after ~1 s of nothing).
        assert r.gateway.pipeline is not None
        r.gateway.pipeline.delivery = DeliveryOptions(typing_delay=0.0)
        gate = Gate()  # the reply waits until the typing indicator is shown
        r.provider.script(gate, Text("ok"))
        fake.user_sends(chat, alice, "not for the bot", thread_id=thread)
        fake.user_sends(chat, alice, f"{BOT} first question", thread_id=thread)
        await fake.wait_for(lambda: bool(fake.transcript(chat).actions))
        gate.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        reply = fake.sent_messages(chat)[0]
        assert reply.thread_id == thread
        assert {a.thread_id for a in fake.transcript(chat).actions} == {thread}
        await fake.wait_for(lambda: fake.transcript(chat).topics[thread] == "Scripted Title")
        fake.user_sends(chat, bob, "my turn", reply_to=reply.message_id)
        await fake.wait_for(lambda: texts(fake, chat) == ["ok", "ok"])
        assert user_texts(r.provider) == ["first question", "my turn"]


# -- commands -------------------------------------------------------------------------------


async def test_commands_menu_start_and_addressee(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    group = fake.group()
    async with running(tmp_path, fake) as r:
        names = [c["command"] for c in fake.commands()]
        assert names == [
            "new",
            "topic",
            "topics",
            "title",
            "stop",
            "status",
            "compact",
            "tools",
            "help",
        ]
        fake.user_sends(chat, alice, "/start")
        await fake.wait_for(lambda: len(texts(fake, chat)) == 1)
        assert texts(fake, chat)[0].startswith("Hello! I am bot.")
        fake.user_sends(group, alice, "/new@other_bot")
        fake.user_sends(group, alice, "/new@gateway_test_bot")
        await fake.wait_for(lambda: texts(fake, group))
        assert texts(fake, group) == ["Started a new conversation."]
        assert r.provider.requests == []


# -- media ----------------------------------------------------------------------------------


async def test_a_photo_reaches_the_model_as_an_image_with_its_caption(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    picture = b"\xff\xd8\xff\xe0 not really a jpeg"
    async with running(tmp_path, fake) as r:
        fake.user_sends(chat, alice, photo=picture, caption="what is this?")
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        [entry] = [e for e in r.provider.requests[0].messages if isinstance(e, UserEntry)]
        assert entry.text == "what is this?"
        [image] = entry.images
        assert image.media_type == "image/jpeg"
        assert base64.b64decode(image.data_base64) == picture


async def test_images_too_large_or_not_downloadable_become_notes(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake, max_download=16) as r:
        fake.user_sends(chat, alice, photo=b"x" * 17, caption="big one")
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        fake.fail_next("getFile", status=400, description="Bad Request: invalid file_id")
        fake.user_sends(chat, alice, photo=b"small", caption="small one")
        await fake.wait_for(lambda: texts(fake, chat) == ["ok", "ok"])
        assert user_texts(r.provider, 0) == [
            "big one\n[attachment: photo (image/jpeg, 17 bytes, too large)]"
        ]
        assert user_texts(r.provider, 1)[-1] == (
            "small one\n[attachment: photo (image/jpeg, could not be downloaded)]"
        )
        assert all(
            not e.images for e in r.provider.requests[1].messages if isinstance(e, UserEntry)
        )


# -- webhook mode ---------------------------------------------------------------------------


def document_update(chat: int, user: JSON, message_id: int, file_id: str, **doc: Any) -> JSON:
    message = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat, "type": "private", "first_name": user["first_name"]},
        "from": user,
        "document": {"file_id": file_id, "file_unique_id": file_id} | doc,
    }
    return {"update_id": 900 + message_id, "message": message}


async def test_webhook_checks_the_secret_and_serves_updates_including_documents(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    extra = f'mode = "webhook"\nwebhook_secret = "{SECRET}"'
    async with running(tmp_path, fake, extra=extra) as r:
        assert r.gateway.server is not None
        url = f"{r.gateway.server.url}/telegram/webhook"
        update = {"update_id": 1, "message": fake.user_sends(chat, alice, "via webhook")}
        assert await fake.deliver_webhook(url, update, secret_token="wrong") == 403
        assert await fake.deliver_webhook(url, update) == 403
        assert fake.calls("sendMessage") == []
        assert r.provider.requests == []
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data="[1, 2]", headers=headers) as response,
        ):
            assert response.status == 400
        assert await fake.deliver_webhook(url, update, secret_token=SECRET) == 200
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        png = fake.add_file(b"\x89PNG fake", file_name="chart.png", mime_type="image/png")
        image = document_update(chat, alice, 50, png, file_name="chart.png", mime_type="image/png")
        pdf = document_update(
            chat, alice, 51, "BQpdf", file_name="a.pdf", mime_type="application/pdf"
        )
        pdf["message"]["caption"] = "summarise"
        pdf["message"]["document"]["file_size"] = 2048
        assert await fake.deliver_webhook(url, image, secret_token=SECRET) == 200
        await fake.wait_for(lambda: len(texts(fake, chat)) == 2)
        assert await fake.deliver_webhook(url, pdf, secret_token=SECRET) == 200
        await fake.wait_for(lambda: len(texts(fake, chat)) == 3)
        [entry] = [e for e in r.provider.requests[1].messages if isinstance(e, UserEntry)][-1:]
        assert base64.b64decode(entry.images[0].data_base64) == b"\x89PNG fake"
        assert entry.images[0].media_type == "image/png"
        assert user_texts(r.provider)[-1] == (
            "summarise\n[attachment: a.pdf (application/pdf, 2.0 KB)]"
        )
        assert fake.calls("setWebhook") == []
        assert fake.calls("getUpdates") == []


async def test_webhook_is_registered_only_when_a_public_url_is_given(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    extra = f'mode = "webhook"\nwebhook_secret = "{SECRET}"'
    public = "https://bot.example.com/telegram/webhook"
    async with running(tmp_path, fake, extra=extra, webhook_url=public):
        assert (fake.webhook_url, fake.webhook_secret) == (public, SECRET)


# -- delivery guarantees ---------------------------------------------------------------------


async def test_a_redelivered_update_after_a_restart_gets_no_second_reply(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake):
        fake.user_sends(chat, alice, "only once")
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        update_id = int(fake.all_updates[-1]["update_id"])
    async with running(tmp_path, fake) as again:
        fake.redeliver(update_id)
        metrics = again.gateway.metrics
        await fake.wait_for(lambda: metrics.duplicates.value("telegram") == 1)
        await fake.wait_for(lambda: fake.pending_updates == [])
        assert texts(fake, chat) == ["ok"]
        assert again.provider.requests == []


async def test_an_edited_message_steers_into_the_running_run(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        gate = Gate()
        r.provider.script(gate, Text("first answer"))
        r.provider.script(Text("second answer"))
        original = fake.user_sends(chat, alice, "what is 2+3")
        await asyncio.wait_for(gate.reached.wait(), TIMEOUT)
        fake.user_sends(chat, alice, "what is 2+2", edited=True)
        await fake.wait_for(lambda: fake.transcript(chat).reactions)
        assert fake.transcript(chat).reactions == {original["message_id"]: ("\N{EYES}",)}
        gate.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["first answer", "second answer"])
        assert "what is 2+2" in user_texts(r.provider)


async def test_rate_limits_are_honoured_through_the_chat_budget(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.group()
    fake.fail_next("sendMessage", status=429, retry_after=1)
    async with running(tmp_path, fake) as r:
        fake.user_sends(chat, alice, f"{BOT} hi")
        await fake.wait_for(lambda: texts(fake, chat) == ["ok"])
        assert r.gateway.metrics.rate_limited.value("telegram") == 1
        refused, delivered = fake.calls("sendMessage")
        assert (refused.status, delivered.status) == (429, 200)


async def test_rejected_markup_is_resent_as_plain_text(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.group()
    fake.fail_next("sendMessage", status=400, description="Bad Request: can't parse entities: x")
    async with running(tmp_path, fake) as r:
        r.provider.script(Text("**bold** move"))
        fake.user_sends(chat, alice, f"{BOT} hi")
        await fake.wait_for(lambda: texts(fake, chat) == ["bold move"])
        assert fake.sent_messages(chat)[0].parse_mode is None


class StateAtLog(logging.Handler):
    """Keeps each adapter log line with the adapter's state at that moment."""

    def __init__(self, adapter: TelegramAdapter) -> None:
        super().__init__(logging.WARNING)
        self.adapter = adapter
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), self.adapter.state))


async def test_network_errors_back_off_then_reconnect(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    logger = logging.getLogger("adapters.telegram")
    async with running(tmp_path, fake) as r:
        seen = StateAtLog(r.adapter)
        logger.addHandler(seen)

        async def exchange(failures: int, replies: int) -> None:
            fake.drop_connections(failures)
            fake.user_sends(chat, alice, "still there?")
            await fake.wait_for(lambda: len(texts(fake, chat)) == replies)
            await fake.wait_for(lambda: fake.pending_updates == [])
            await fake.wait_for(lambda: r.adapter.state == "connected")

        try:
            await exchange(failures=2, replies=1)
            await exchange(failures=1, replies=2)
        finally:
            logger.removeHandler(seen)
        retries = [(line, state) for line, state in seen.lines if "getUpdates failed" in line]
        # the count starts over after a successful poll
        assert [line.split("(attempt ")[1] for line, _ in retries] == ["1)", "2)", "1)"]
        delays = [float(line.split("retrying in ")[1].split("s ")[0]) for line, _ in retries]
        # the shared backoff: base 0.01 doubling, jittered down by at most half (and
        # logged to two decimals)
        assert [d <= 0.01 for d in (delays[0], delays[2])] == [True, True]
        assert 0.01 <= delays[1] <= 0.02
        assert {state for _, state in retries} == {"reconnecting"}
        assert all(fake.token not in line for line, _ in seen.lines)


async def test_a_refused_token_fails_the_adapter_for_good_naming_the_fix(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    config = load(tmp_path, fake, token="42:wrong-token")
    gateway = Gateway(config)  # built from config: adapters.telegram.from_config
    await gateway.start()
    try:
        entry = gateway.supervised["telegram"]
        await wait_for(lambda: entry.failed is not None)
        ready, detail = gateway.readiness()
        assert not ready
        assert detail["adapters"]["telegram"]["state"] == "failed"
        message = detail["adapters"]["telegram"]["detail"]
        assert "TELEGRAM_BOT_TOKEN" in message
        assert "adapters.telegram.token" in message
        assert "wrong-token" not in message
        assert gateway.server is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{gateway.server.url}/readyz") as response,
        ):
            assert response.status == 503
    finally:
        await gateway.stop()


# -- primitives against the fake, no gateway --------------------------------------------------


@asynccontextmanager
async def adapter_for(fake: FakeTelegram) -> AsyncIterator[TelegramAdapter]:
    settings = TelegramSettings(
        token=fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url
    )
    adapter = TelegramAdapter(settings)
    async with adapter.bot:
        yield adapter


def target(chat: int, thread: int | None = None, **kw: Any) -> ChatTarget:
    thread_id = None if thread is None else str(thread)
    return ChatTarget(platform="telegram", chat_id=str(chat), thread_id=thread_id, **kw)


async def test_refusals_become_adapter_errors(fake: FakeTelegram, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    async with adapter_for(fake) as adapter:
        with pytest.raises(MessageTooLong):
            await adapter.send(target(chat), "x" * 4097, markup=False)
        with pytest.raises(MarkupRejected):
            await adapter.send(target(chat), "<foo>x</foo>", markup=True)
        sent = await adapter.send(target(chat), "<b>same</b>", markup=True)
        with pytest.raises(MessageNotModified):
            await adapter.edit(sent, "<b>same</b>", markup=True)
        fake.fail_next("sendMessage", status=429, retry_after=7)
        with pytest.raises(RateLimited) as limited:
            await adapter.send(target(chat), "hi", markup=False)
        assert limited.value.retry_after == 7


async def test_reactions_use_the_eyes_emoji_or_raise_not_allowed(
    fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.group()
    first = fake.user_sends(chat, alice, "one")
    second = fake.user_sends(chat, alice, "two")
    async with adapter_for(fake) as adapter:
        await adapter.react(target(chat), f"{chat}:{first['message_id']}", "\N{EYES}")
        assert fake.transcript(chat).reactions == {first["message_id"]: ("\N{EYES}",)}
        fake.set_reactions_allowed(chat, False)
        with pytest.raises(NotAllowed):
            await adapter.react(target(chat), f"{chat}:{second['message_id']}", "\N{EYES}")


async def test_typing_goes_to_the_thread_and_stopping_it_is_a_no_op(fake: FakeTelegram) -> None:
    chat = fake.supergroup(forum=True)
    thread = fake.create_topic(chat, "Topic")
    async with adapter_for(fake) as adapter:
        await adapter.typing(target(chat, thread), True)
        await adapter.typing(target(chat, thread), False)
        assert [(a.action, a.thread_id) for a in fake.transcript(chat).actions] == [
            ("typing", thread)
        ]


async def test_rename_needs_a_topic_and_rights_and_logs_a_refusal_once(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    chat = fake.supergroup(forum=True)
    thread = fake.create_topic(chat, "Topic")
    async with adapter_for(fake) as adapter:
        await adapter.rename(target(chat), "no topic here")  # a plain chat: nothing to name
        await adapter.rename(target(chat, thread), "A" * 200)
        assert fake.transcript(chat).topics[thread] == "A" * 128
        await adapter.rename(target(chat, thread), "A" * 128)  # unchanged: not an error
        fake.set_can_manage_topics(chat, False)
        for _ in range(2):
            with pytest.raises(NotAllowed):
                await adapter.rename(target(chat, thread), "Other")
        refusals = [r for r in caplog.records if "cannot rename topics" in r.getMessage()]
        assert len(refusals) == 1
        assert fake.calls("editForumTopic")[0].params["name"] == "A" * 128


async def test_service_messages_are_skipped_not_answered(fake: FakeTelegram, alice: JSON) -> None:
    chat = fake.supergroup(forum=True)
    fake.create_topic(chat, "Only a service message")
    seen: list[InboundMessage] = []

    class Sink:
        async def handle(self, message: InboundMessage) -> bool:
            seen.append(message)
            return True

    settings = TelegramSettings(
        token=fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url, poll_timeout=1
    )
    adapter = TelegramAdapter(settings)
    task = asyncio.create_task(adapter.run(Sink()))
    try:
        fake.user_sends(chat, alice, f"{BOT} after the service message")
        await fake.wait_for(lambda: fake.pending_updates == [] and adapter.state == "connected")
        await wait_for(lambda: bool(seen))
        assert [m.text for m in seen] == ["after the service message"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
