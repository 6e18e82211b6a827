"""The fake Telegram Bot API, exercised through the real python-telegram-bot client."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

from tests.fakes.telegram_api import (
    SECRET_HEADER,
    EntityParseError,
    FakeTelegram,
    parse_html,
    render_text,
)

JSON = dict[str, Any]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as bot:
        yield bot


@pytest.fixture
def alice(fake: FakeTelegram) -> JSON:
    return fake.make_user("Alice", username="alice_w")


async def raw_call(
    fake: FakeTelegram,
    method: str,
    *,
    json: JSON | None = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, JSON]:
    url = f"{fake.base_url}{token or fake.token}/{method}"
    async with aiohttp.ClientSession() as session, session.post(url, json=json, data=form) as resp:
        body: JSON = await resp.json()
        return resp.status, body


# -- markup rules (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("<b>bold</b> &lt;x&gt; &amp;", "bold <x> &", [("bold", 0, 4)]),
        ("😀 <i>it</i>", "😀 it", [("italic", 3, 2)]),  # offsets count UTF-16 units
        ('<a href="https://e.x/?a=1&amp;b=2">link</a>', "link", [("text_link", 0, 4)]),
        ("<b>a <i>b</i></b>", "a b", [("bold", 0, 3), ("italic", 2, 1)]),
        ('<pre><code class="language-py">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
        ('<span class="tg-spoiler">s</span>', "s", [("spoiler", 0, 1)]),
        ("a &unknown; b", "a &unknown; b", []),
    ],
)
def test_parse_html_renders_like_the_server(
    html: str, text: str, entities: list[tuple[str, int, int]]
) -> None:
    shown, found = parse_html(html)
    assert shown == text
    assert [(e["type"], e["offset"], e["length"]) for e in found] == entities


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("é <b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_parse_html_rejects_like_tdlib(html: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(html)
    assert str(caught.value) == error


def test_render_text_trims_and_detects_entities() -> None:
    text, entities = render_text("  <code>@not_a_mention</code> @alice_w  ", "HTML", None)
    assert text == "@not_a_mention @alice_w"
    assert [(e["type"], e["offset"]) for e in entities] == [("code", 0), ("mention", 15)]


# -- bot identity and tokens -----------------------------------------------------------------


async def test_get_me_reports_the_configured_bot(fake: FakeTelegram, bot: Bot) -> None:
    fake.has_topics_enabled = True
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (fake.bot_id, "gateway_test_bot", True)
    assert me.can_join_groups is True
    assert me.has_topics_enabled is True


async def test_wrong_token_is_rejected_as_the_real_server_does(fake: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("42:wrong-token", base_url=fake.base_url):
            pass
    assert fake.calls("getMe")[-1].status == 401
    status, body = await raw_call(fake, "getMe", token="42:wrong-token")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})


async def test_unknown_method_is_a_404(fake: FakeTelegram) -> None:
    status, body = await raw_call(fake, "sendTelepathy", json={"chat_id": 1})
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})


async def test_json_and_form_bodies_are_both_understood(fake: FakeTelegram, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    markup = {"inline_keyboard": [[{"text": "Stop", "callback_data": "stop"}]]}
    status, _ = await raw_call(
        fake, "sendMessage", json={"chat_id": chat, "text": "json", "reply_markup": markup}
    )
    assert status == 200
    form = {"chat_id": str(chat), "text": "form", "reply_markup": json.dumps(markup)}
    status, body = await raw_call(fake, "sendMessage", form=form)
    assert status == 200
    assert body["result"]["reply_markup"] == markup
    assert [m.reply_markup for m in fake.sent_messages(chat)] == [markup, markup]


# -- polling ---------------------------------------------------------------------------------


async def test_updates_stay_until_an_offset_confirms_them(
    fake: FakeTelegram, bot: Bot, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    fake.user_sends(chat, alice, "one")
    first = await bot.get_updates(timeout=0)
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [u.update_id for u in first]
    update_id = first[0].update_id
    assert await bot.get_updates(offset=update_id + 1, timeout=0) == ()
    assert fake.pending_updates == []

    fake.redeliver(update_id)  # e.g. a restart before the offset reached the server
    assert await bot.get_updates(offset=update_id + 1, timeout=0) == ()
    fake.redeliver(update_id)
    restarted = await bot.get_updates(timeout=0)
    assert [u.update_id for u in restarted] == [update_id]
    copy_id = fake.redeliver(update_id, as_new=True)
    duplicate = await bot.get_updates(offset=update_id + 1, timeout=0)
    assert [u.update_id for u in duplicate] == [copy_id]
    assert duplicate[0].message is not None
    assert duplicate[0].message.text == "one"


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    fake: FakeTelegram, bot: Bot, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda: fake.waiting_pollers == 1)
    fake.user_sends(chat, alice, "wake up")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in updates if u.message] == ["wake up"]


async def test_a_newer_poll_terminates_the_waiting_one(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.wait_for(lambda: fake.waiting_pollers == 1)
    status, body = await raw_call(fake, "getUpdates", json={"timeout": 0})
    assert (status, body["result"]) == (200, [])
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await poll


async def test_dropped_connections_surface_as_network_errors(fake: FakeTelegram, bot: Bot) -> None:
    fake.drop_connections(1)
    with pytest.raises(NetworkError):
        await bot.get_updates(timeout=0)
    assert await bot.get_updates(timeout=0) == ()
    assert [c.status for c in fake.calls("getUpdates")] == [0, 200]


async def test_application_polls_handles_and_confirms(fake: FakeTelegram, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    seen: list[str] = []

    async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        assert update.message.text is not None
        seen.append(update.message.text)

    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, on_text))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=dtm.timedelta(seconds=1))
        await app.start()
        fake.user_sends(chat, alice, "hello bot")
        await fake.wait_for(lambda: seen)
        await app.updater.stop()
        await app.stop()
    assert seen == ["hello bot"]
    assert fake.calls("deleteWebhook")  # PTB's polling bootstrap
    assert fake.pending_updates == []  # the updater confirmed the offset on its way out


# -- sending and editing ---------------------------------------------------------------------


async def test_send_then_edit_shows_current_text(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    sent = await bot.send_message(chat, "<b>Thinking</b>…", parse_mode="HTML")
    assert sent.text == "Thinking…"
    edited = await bot.edit_message_text(
        "Done: <i>42</i>", chat, sent.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message)
    assert edited.edit_date is not None
    [shown] = fake.sent_messages(chat)
    assert (shown.text, shown.source, shown.parse_mode, shown.edits) == (
        "Done: 42",
        "Done: <i>42</i>",
        "HTML",
        1,
    )
    assert shown.entities == ({"type": "italic", "offset": 6, "length": 2},)


async def test_identical_edit_is_not_modified(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Stop", callback_data="stop")]])
    sent = await bot.send_message(chat, "same", reply_markup=keyboard)
    with pytest.raises(BadRequest, match=r"^Message is not modified: specified new message"):
        await bot.edit_message_text("same", chat, sent.message_id, reply_markup=keyboard)
    await bot.edit_message_text("same", chat, sent.message_id)  # dropping the keyboard edits
    assert fake.sent_messages(chat)[0].reply_markup is None


async def test_edit_errors(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    from_user = fake.user_sends(chat, alice, "mine")
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", chat, 999)
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("x", chat, from_user["message_id"])


async def test_4096_character_limit_counts_after_entity_parsing(
    fake: FakeTelegram, bot: Bot, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    await bot.send_message(chat, "a" * 4096)
    await bot.send_message(chat, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"^Message is too long$"):
        await bot.send_message(chat, "a" * 4097)
    assert len(fake.sent_messages(chat)) == 2


async def test_html_parse_error_is_a_bad_request(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(chat, "<b>unclosed", parse_mode="HTML")
    assert caught.value.message == (
        "Can't parse entities: can't find end tag corresponding to start tag \"b\""
    )
    assert fake.calls("sendMessage")[-1].description == (
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
    )
    assert fake.sent_messages(chat) == []


async def test_replies_must_exist_unless_allowed(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    asked = fake.user_sends(chat, alice, "question")
    answer = await bot.send_message(chat, "answer", reply_to_message_id=asked["message_id"])
    assert answer.reply_to_message is not None
    assert answer.reply_to_message.text == "question"
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(chat, "x", reply_parameters=ReplyParameters(message_id=999))
    lenient = ReplyParameters(message_id=999, allow_sending_without_reply=True)
    await bot.send_message(chat, "x", reply_parameters=lenient)
    assert [m.reply_to for m in fake.sent_messages(chat)] == [asked["message_id"], None]


async def test_delete_and_chat_action(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    sent = await bot.send_message(chat, "gone soon")
    assert await bot.send_chat_action(chat, "typing")
    with pytest.raises(BadRequest, match="Wrong parameter action"):
        await bot.send_chat_action(chat, "dancing")
    assert await bot.delete_message(chat, sent.message_id)
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(chat, sent.message_id)
    transcript = fake.transcript(chat)
    assert transcript.messages == ()
    assert [a.action for a in transcript.actions] == ["typing"]


# -- fault injection -------------------------------------------------------------------------


async def test_429_raises_retry_after_once(
    fake: FakeTelegram, bot: Bot, alice: JSON, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PTB 22 warns on int retry_after unless opted in to timedelta (warnings are errors here).
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    chat = fake.private_chat(alice)
    fake.fail_next("sendMessage", retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chat, "hi")
    assert caught.value.retry_after == dtm.timedelta(seconds=3)
    await bot.send_message(chat, "hi")
    assert [c.status for c in fake.calls("sendMessage")] == [429, 200]
    fake.fail_next("sendMessage", retry_after=7)
    status, body = await raw_call(fake, "sendMessage", json={"chat_id": chat, "text": "x"})
    assert (status, body) == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
    )


async def test_wait_for_times_out_loudly(fake: FakeTelegram) -> None:
    with pytest.raises(TimeoutError, match="'sendMessage' not met"):
        await fake.wait_for("sendMessage", timeout=0.05)


# -- reactions, topics, drafts ---------------------------------------------------------------


async def test_reactions_record_and_fail(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    incoming = fake.user_sends(chat, alice, "hi")
    assert await bot.set_message_reaction(chat, incoming["message_id"], "👀")
    assert fake.transcript(chat).reactions == {incoming["message_id"]: ("👀",)}
    with pytest.raises(BadRequest, match="Reaction_invalid"):
        await bot.set_message_reaction(chat, incoming["message_id"], "not an emoji")
    fake.set_reactions_allowed(chat, False)
    with pytest.raises(BadRequest, match="Reaction_invalid"):
        await bot.set_message_reaction(chat, incoming["message_id"], "👍")
    assert fake.transcript(chat).reactions == {incoming["message_id"]: ("👀",)}


async def test_forum_message_replies_to_the_topic_creation(
    fake: FakeTelegram, bot: Bot, alice: JSON
) -> None:
    forum = fake.supergroup("Team", forum=True)
    thread = fake.create_topic(forum, "Ideas")
    fake.user_sends(forum, alice, "plain message in a topic", thread_id=thread)
    updates = await bot.get_updates(timeout=0)
    created, plain = (u.message for u in updates)
    assert created is not None
    assert created.forum_topic_created is not None
    assert plain is not None
    assert plain.is_topic_message
    assert plain.message_thread_id == thread
    assert plain.reply_to_message is not None
    assert plain.reply_to_message.message_id == thread
    assert plain.reply_to_message.forum_topic_created is not None
    assert plain.reply_to_message.forum_topic_created.name == "Ideas"

    answer = await bot.send_message(forum, "noted", message_thread_id=thread)
    follow_up = fake.user_sends(forum, alice, "to the bot", reply_to=answer.message_id)
    assert follow_up["message_thread_id"] == thread
    assert follow_up["reply_to_message"]["from"]["id"] == fake.bot_id
    with pytest.raises(BadRequest, match="Message thread not found"):
        await bot.send_message(forum, "x", message_thread_id=12345)


async def test_forum_topic_rename(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    forum = fake.supergroup("Team", forum=True)
    users_topic = fake.create_topic(forum, "Ideas", creator=alice)
    bots_topic = (await bot.create_forum_topic(forum, "New chat")).message_thread_id
    assert await bot.edit_forum_topic(forum, users_topic, name="Roadmap")
    with pytest.raises(BadRequest, match="Topic_not_modified"):
        await bot.edit_forum_topic(forum, users_topic, name="Roadmap")
    await bot.edit_forum_topic(forum, bots_topic, name="x" * 200)
    assert fake.transcript(forum).topics == {users_topic: "Roadmap", bots_topic: "x" * 128}

    fake.set_can_manage_topics(forum, False)
    with pytest.raises(BadRequest, match="Not enough rights to manage topics"):
        await bot.edit_forum_topic(forum, users_topic, name="Nope")
    await bot.edit_forum_topic(forum, bots_topic, name="Own topic")  # creators keep the right
    fake.reject_long_topic_names = True
    with pytest.raises(BadRequest, match="Topic_title_invalid"):
        await bot.edit_forum_topic(forum, bots_topic, name="y" * 129)
    assert fake.transcript(forum).topics[bots_topic] == "Own topic"


async def test_private_chat_topics(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    with pytest.raises(BadRequest, match="The chat is not a forum"):
        await bot.create_forum_topic(chat, "Trip")
    fake.has_topics_enabled = True
    thread = (await bot.create_forum_topic(chat, "Trip")).message_thread_id
    message = fake.user_sends(chat, alice, "book a train", thread_id=thread)
    assert (message["message_thread_id"], message["is_topic_message"]) == (thread, True)
    assert "reply_to_message" not in message  # the creation-reply quirk is a forum one
    await bot.send_message_draft(chat, 1, "Looking…", message_thread_id=thread)
    assert fake.transcript(chat).drafts[0].thread_id == thread


async def test_message_drafts(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    group = fake.group()
    assert await bot.send_message_draft(chat, 7, "<b>Draft</b> one", parse_mode="HTML")
    assert [(d.draft_id, d.text, d.source) for d in fake.transcript(chat).drafts] == [
        (7, "Draft one", "<b>Draft</b> one")
    ]
    with pytest.raises(BadRequest, match="Textdraft_peer_invalid"):
        await bot.send_message_draft(group, 7, "nope")
    fake.supports_drafts = False  # an older Bot API server does not know the method
    with pytest.raises(InvalidToken, match=r"^Not Found$"):
        await bot.send_message_draft(chat, 7, "gone")


# -- entities, files, commands ---------------------------------------------------------------


async def test_user_messages_carry_server_entities(
    fake: FakeTelegram, bot: Bot, alice: JSON
) -> None:
    group = fake.group("Friends")
    fake.user_sends(group, alice, "😀 /new@gateway_test_bot hey @gateway_test_bot")
    [update] = await bot.get_updates(timeout=0)
    message = update.message
    assert message is not None
    assert message.chat.type == "group"
    assert list(message.parse_entities().values()) == [
        "/new@gateway_test_bot",
        "@gateway_test_bot",
    ]
    [command, mention] = message.entities
    assert (command.type, command.offset, mention.type) == ("bot_command", 3, "mention")


async def test_files_download_and_upload(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    chat = fake.private_chat(alice)
    fake.user_sends(chat, alice, photo=b"\xff\xd8jpeg", caption="look")
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None
    assert update.message.caption == "look"
    photo = await update.message.photo[-1].get_file()
    assert bytes(await photo.download_as_bytearray()) == b"\xff\xd8jpeg"

    sent = await bot.send_document(
        chat, b"report", filename="r.txt", caption="<b>r</b>", parse_mode="HTML"
    )
    assert sent.document is not None
    assert sent.document.file_name == "r.txt"
    assert fake.calls("sendDocument")[0].files == {"document": b"report"}
    assert [(m.kind, m.text) for m in fake.sent_messages(chat)] == [("document", "r")]
    again = await bot.get_file(sent.document.file_id)
    assert bytes(await again.download_as_bytearray()) == b"report"


async def test_commands_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_my_commands([("new", "Start a new conversation")])
    assert [(c.command, c.description) for c in await bot.get_my_commands()] == [
        ("new", "Start a new conversation")
    ]
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([("New", "capitals are refused")])


# -- webhook ---------------------------------------------------------------------------------


async def test_webhook_mode_and_delivery(fake: FakeTelegram, bot: Bot, alice: JSON) -> None:
    received: list[tuple[str | None, JSON]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get(SECRET_HEADER), await request.json()))
        ok = request.headers.get(SECRET_HEADER) == "s3cret"
        return web.Response(status=200 if ok else 403)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        with pytest.raises(BadRequest, match="an https url must be provided"):
            await bot.set_webhook(url)
        assert await bot.set_webhook("https://gateway.example/hook", secret_token="s3cret")
        assert (fake.webhook_url, fake.webhook_secret) == ("https://gateway.example/hook", "s3cret")
        with pytest.raises(Conflict):
            await bot.get_updates(timeout=0)
        fake.user_sends(fake.private_chat(alice), alice, "via webhook")
        update = fake.pending_updates[0]
        assert await fake.deliver_webhook(url, update, "s3cret") == 200
        assert await fake.deliver_webhook(url, update, "wrong") == 403
    finally:
        await runner.cleanup()
    assert received[0] == ("s3cret", update)
    assert (await bot.get_webhook_info()).pending_update_count == 1
    assert await bot.delete_webhook()
    assert len(await bot.get_updates(timeout=0)) == 1
