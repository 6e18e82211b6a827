"""Telegram update -> InboundMessage conversion, on real Bot API JSON shapes, no server."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Update

from adapters.common.identity import BotIdentity
from adapters.common.sizes import human_size
from adapters.telegram.inbound import (
    Converted,
    address_command,
    convert_update,
    platform_message_id,
    strip_leading_mention,
)

JSON = dict[str, Any]
ME = BotIdentity(user_id="123456789", name="gateway_test_bot")
BOT_USER: JSON = {
    "id": int(ME.user_id),
    "is_bot": True,
    "first_name": "Gateway",
    "username": ME.name,
}
ALICE: JSON = {"id": 777000001, "is_bot": False, "first_name": "Alice", "last_name": "W"}
PRIVATE: JSON = {"id": ALICE["id"], "type": "private", "first_name": "Alice"}
GROUP: JSON = {"id": -4000000001, "type": "group", "title": "Team"}
FORUM: JSON = {"id": -1000000000001, "type": "supergroup", "title": "Forum", "is_forum": True}


def message(chat: JSON, text: str | None = "hello", **extra: Any) -> JSON:
    body: JSON = {"message_id": 10, "date": 1700000000, "chat": chat, "from": ALICE}
    if text is not None:
        body["text"] = text
    return body | extra


def mention(text: str, at: int, length: int) -> list[JSON]:
    return [{"type": "mention", "offset": at, "length": length}]


def convert(msg: JSON, *, me: BotIdentity = ME, key: str = "message") -> Converted | None:
    return convert_update(Update.de_json({"update_id": 1, key: msg}, None), me)


def converted(msg: JSON, **kw: Any) -> Converted:
    result = convert(msg, **kw)
    assert result is not None
    return result


def test_private_message_is_direct_and_scoped_to_the_user() -> None:
    inbound = converted(message(PRIVATE, "hi there")).message
    assert inbound.scope == f"telegram:user:{ALICE['id']}"
    assert inbound.topic is None
    assert (inbound.is_direct, inbound.addressed, inbound.from_bot) == (True, True, False)
    assert inbound.message_id == f"{PRIVATE['id']}:10"
    assert inbound.user_id == str(ALICE["id"])
    assert inbound.user_name == "Alice W"
    assert inbound.target.chat_id == str(PRIVATE["id"])
    assert inbound.target.thread_id is None
    assert inbound.target.extra["chat_type"] == "private"
    assert inbound.match == {"chat": str(PRIVATE["id"])}


def test_private_topic_needs_topics_enabled_on_the_bot() -> None:
    msg = message(PRIVATE, "in a topic", message_thread_id=5, is_topic_message=True)
    plain = converted(msg).message
    assert (plain.scope, plain.topic) == (f"telegram:user:{ALICE['id']}", None)
    topics = BotIdentity(user_id=ME.user_id, name=ME.name, has_topics_enabled=True)
    inbound = converted(msg, me=topics).message
    assert inbound.scope == f"telegram:chat:{PRIVATE['id']}:topic:5"
    assert inbound.topic == f"{PRIVATE['id']}:5"
    assert inbound.target.thread_id == "5"
    assert inbound.is_direct


def test_group_message_without_mention_is_not_addressed() -> None:
    inbound = converted(message(GROUP, "just chatting")).message
    assert inbound.scope == f"telegram:chat:{GROUP['id']}"
    assert (inbound.is_direct, inbound.addressed) == (False, False)
    assert inbound.target.reply_to == "10"
    assert inbound.match == {"chat": str(GROUP["id"])}


def test_mention_of_the_bot_addresses_it_and_the_leading_mention_is_stripped() -> None:
    text = "@Gateway_Test_Bot what time is it?"
    inbound = converted(message(GROUP, text, entities=mention(text, 0, 17))).message
    assert inbound.addressed
    assert inbound.text == "what time is it?"


def test_mention_of_someone_else_does_not_address_the_bot() -> None:
    text = "@somebody_else hi"
    assert not converted(message(GROUP, text, entities=mention(text, 0, 14))).message.addressed


def test_text_mention_of_the_bot_addresses_it() -> None:
    entities = [{"type": "text_mention", "offset": 0, "length": 7, "user": BOT_USER}]
    inbound = converted(message(GROUP, "Gateway, help", entities=entities)).message
    assert inbound.addressed
    assert inbound.text == "Gateway, help"


def test_reply_to_the_bot_addresses_it() -> None:
    bots_message = {"message_id": 3, "date": 1700000000, "chat": GROUP, "from": BOT_USER}
    inbound = converted(message(GROUP, "and then?", reply_to_message=bots_message)).message
    assert inbound.addressed


def test_forum_topic_creation_message_is_not_a_reply_to_the_bot() -> None:
    created = {
        "message_id": 7,
        "date": 1700000000,
        "chat": FORUM,
        "from": BOT_USER,  # the bot opened this topic itself
        "message_thread_id": 7,
        "is_topic_message": True,
        "forum_topic_created": {"name": "Ideas", "icon_color": 7322096},
    }
    msg = message(
        FORUM, "plain talk", message_thread_id=7, is_topic_message=True, reply_to_message=created
    )
    inbound = converted(msg).message
    assert not inbound.addressed
    assert inbound.scope == f"telegram:chat:{FORUM['id']}:topic:7"
    assert inbound.topic == f"{FORUM['id']}:7"
    assert inbound.target.thread_id == "7"


def test_reply_chain_in_a_plain_supergroup_is_not_a_topic() -> None:
    chat = {"id": -1000000000002, "type": "supergroup", "title": "No forum"}
    inbound = converted(message(chat, "hi", message_thread_id=4)).message
    assert (inbound.topic, inbound.target.thread_id) == (None, None)
    assert inbound.scope == f"telegram:chat:{chat['id']}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/new@gateway_test_bot", ("/new", True)),
        ("/topic@Gateway_Test_Bot ideas", ("/topic ideas", True)),
        ("/new@otherbot", (None, False)),
        ("/help", ("/help", True)),
        ("/start", ("/start", True)),
        ("/weather", ("/weather", False)),  # someone else's bare command
        ("plain /new", ("plain /new", False)),
    ],
)
def test_command_addressee(text: str, expected: tuple[str | None, bool]) -> None:
    assert address_command(text, "gateway_test_bot") == expected


def test_command_for_another_bot_is_dropped_and_ours_is_handled() -> None:
    assert convert(message(GROUP, "/new@otherbot")) is None
    ours = converted(message(GROUP, "/new@gateway_test_bot")).message
    assert (ours.text, ours.addressed) == ("/new", True)


def test_only_mention_text_is_kept() -> None:
    assert strip_leading_mention("@gateway_test_bot", "gateway_test_bot") == "@gateway_test_bot"
    assert strip_leading_mention("@gateway_test_botx hi", "gateway_test_bot") == (
        "@gateway_test_botx hi"
    )


def test_edited_message_is_flagged_with_a_distinct_id() -> None:
    msg = message(PRIVATE, "fixed typo", edit_date=1700000100)
    inbound = converted(msg, key="edited_message").message
    assert inbound.edited
    assert inbound.message_id == f"{PRIVATE['id']}:10:edit:1700000100"
    assert platform_message_id(inbound.message_id) == 10


def test_service_messages_and_unknown_updates_are_skipped() -> None:
    created = message(FORUM, None, forum_topic_created={"name": "x", "icon_color": 1})
    assert convert(created) is None
    assert convert_update(Update.de_json({"update_id": 2}, None), ME) is None


def test_photo_is_downloaded_from_the_largest_size_with_the_caption_as_text() -> None:
    sizes = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 68, "file_size": 10},
        {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 99},
    ]
    result = converted(message(PRIVATE, None, photo=sizes, caption="what is this?"))
    assert result.message.text == "what is this?"
    [download] = result.downloads
    assert (download.file_id, download.media_type, download.size) == ("big", "image/jpeg", 99)


def test_documents_become_images_or_notes() -> None:
    def document(name: str, mime: str) -> JSON:
        doc = {"file_id": name, "file_unique_id": name, "file_name": name}
        return {"document": doc | {"mime_type": mime, "file_size": 2048}}

    image = converted(message(PRIVATE, None, **document("pic.png", "image/png")))
    assert [(d.file_id, d.media_type) for d in image.downloads] == [("pic.png", "image/png")]
    pdf = converted(
        message(PRIVATE, None, caption="read this", **document("a.pdf", "application/pdf"))
    )
    assert pdf.downloads == ()
    assert pdf.message.attachment_notes == ("a.pdf (application/pdf, 2.0 KB)",)
    assert pdf.message.text == "read this"


def test_other_media_are_noted_not_dropped() -> None:
    voice = {"file_id": "v", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg"}
    sticker = {
        "file_id": "s",
        "file_unique_id": "s",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": "👍",
    }
    notes = converted(message(PRIVATE, None, voice=voice, sticker=sticker)).message.attachment_notes
    assert notes == ("voice message (audio/ogg, size unknown)", "sticker 👍")


def test_messages_from_bots_are_marked() -> None:
    other_bot = {"id": 5, "is_bot": True, "first_name": "Other"}
    assert converted(message(GROUP, "beep", **{"from": other_bot})).message.from_bot


@pytest.mark.parametrize(
    ("size", "text"), [(None, "size unknown"), (12, "12 bytes"), (3 * 1024 * 1024, "3.0 MB")]
)
def test_human_size(size: int | None, text: str) -> None:
    assert human_size(size) == text
