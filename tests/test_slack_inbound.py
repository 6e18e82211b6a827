"""Slack payload -> InboundMessage, without any server. Payloads come from the fake's
builders, which produce Slack's own JSON shapes."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.common.identity import BotIdentity
from adapters.slack.inbound import (
    channel_kind,
    clean_text,
    command_for_bot,
    command_message,
    parse_message,
    slash_text,
    to_inbound,
)
from tests.fakes.slack_api import FakeSlack

DM = "D0DIRECT01"
CHANNEL = "C0GENERAL1"
GROUP = "G0PRIVATE1"
USER = "U0HUMAN001"


@pytest.fixture
def fake() -> FakeSlack:
    slack = FakeSlack()  # only its event builders: no server is started
    slack.port = 9  # slash command payloads name a response_url on the fake's address
    return slack


@pytest.fixture
def me(fake: FakeSlack) -> BotIdentity:
    return BotIdentity(
        team_id=fake.team_id, user_id=fake.bot_user_id, bot_id=fake.bot_id, name=fake.bot_name
    )


def inbound(event: dict[str, Any], me: BotIdentity, *, owned: bool = False) -> Any:
    parsed = parse_message(event, me)
    assert parsed is not None
    return to_inbound(parsed, me, owned=owned)


def test_direct_message_belongs_to_the_user_scope(fake: FakeSlack, me: BotIdentity) -> None:
    event = fake.message_event(DM, USER, "hello &amp; welcome")
    msg = inbound(event, me)
    assert msg.scope == f"slack:{fake.team_id}:user:{USER}"
    assert (msg.topic, msg.is_direct, msg.addressed, msg.from_bot) == (None, True, True, False)
    assert msg.text == "hello & welcome"
    assert msg.message_id == f"{DM}:{event['ts']}"
    assert (msg.target.chat_id, msg.target.thread_id) == (DM, None)
    assert msg.match == {"team": fake.team_id, "channel": DM}


def test_assistant_thread_message_is_a_persisted_topic(fake: FakeSlack, me: BotIdentity) -> None:
    thread_ts = fake.next_ts()
    msg = inbound(fake.message_event(DM, USER, "plan a trip", thread_ts=thread_ts), me)
    assert msg.scope == f"slack:{fake.team_id}:thread:{DM}:{thread_ts}"
    assert msg.topic == f"{DM}:{thread_ts}"
    assert (msg.target.thread_id, msg.target.extra["assistant"]) == (thread_ts, "1")
    assert msg.is_direct
    assert msg.addressed


def test_mention_and_channel_message_give_the_same_message(
    fake: FakeSlack, me: BotIdentity
) -> None:
    mention = fake.app_mention_event(CHANNEL, USER, "what is up?")
    as_message = {**mention, "type": "message", "channel_type": "channel"}
    first, second = inbound(mention, me), inbound(as_message, me)
    assert first == second
    assert first.text == "what is up?"
    assert first.addressed
    assert not first.is_direct
    assert first.scope == f"slack:{fake.team_id}:thread:{CHANNEL}:{mention['ts']}"
    assert (first.target.thread_id, first.topic) == (mention["ts"], f"{CHANNEL}:{mention['ts']}")
    assert first.target.reply_to == mention["ts"]


def test_channel_thread_reply_is_addressed_only_when_owned_or_mentioned(
    fake: FakeSlack, me: BotIdentity
) -> None:
    root = fake.next_ts()
    reply = fake.message_event(CHANNEL, USER, "and then?", thread_ts=root, channel_type="channel")
    assert not inbound(reply, me).addressed
    owned = inbound(reply, me, owned=True)
    assert owned.addressed
    assert owned.scope == f"slack:{fake.team_id}:thread:{CHANNEL}:{root}"
    assert owned.target.thread_id == root
    mentioned = fake.message_event(
        GROUP, USER, f"<@{me.user_id}> you there?", thread_ts=root, channel_type="group"
    )
    msg = inbound(mentioned, me)
    assert msg.addressed
    assert msg.text == "you there?"
    assert "assistant" not in msg.target.extra


def test_top_level_channel_message_without_mention_is_not_addressed(
    fake: FakeSlack, me: BotIdentity
) -> None:
    msg = inbound(fake.message_event(CHANNEL, USER, "lunch?", channel_type="channel"), me)
    assert not msg.addressed
    assert not msg.is_direct


@pytest.mark.parametrize(
    "event_of",
    [
        lambda f: f.bot_message_event(CHANNEL, "beep"),
        lambda f: f.bot_message_event(DM, "mine", subtype=None, channel_type="im"),
        lambda f: f.bot_message_event(CHANNEL, "other bot", bot_id="B0OTHER001", subtype=None),
    ],
)
def test_bot_messages_are_marked(fake: FakeSlack, me: BotIdentity, event_of: Any) -> None:
    assert inbound(event_of(fake), me).from_bot


def test_own_edit_is_from_bot_and_user_edit_is_an_edit(fake: FakeSlack, me: BotIdentity) -> None:
    original = fake.message_event(DM, USER, "helo")
    edit_ts = fake.next_ts()
    changed = {**original, "text": "hello", "edited": {"user": USER, "ts": edit_ts}}
    edited: dict[str, Any] = {
        "type": "message",
        "subtype": "message_changed",
        "channel": DM,
        "channel_type": "im",
        "ts": edit_ts,
        "event_ts": edit_ts,
        "message": changed,
        "previous_message": original,
    }
    msg = inbound(edited, me)
    assert (msg.text, msg.edited) == ("hello", True)
    assert msg.message_id == f"{DM}:{original['ts']}:edit:{edit_ts}"
    own = {**edited, "message": {**changed, "user": me.user_id, "bot_id": me.bot_id}}
    assert inbound(own, me).from_bot


@pytest.mark.parametrize("subtype", ["channel_join", "message_deleted", "channel_topic"])
def test_non_messages_are_ignored(fake: FakeSlack, me: BotIdentity, subtype: str) -> None:
    event = {**fake.message_event(CHANNEL, USER, "x", channel_type="channel"), "subtype": subtype}
    assert parse_message(event, me) is None


def test_files_are_parsed(fake: FakeSlack, me: BotIdentity) -> None:
    files = [
        {"id": "F1", "name": "cat.png", "mimetype": "image/png", "size": 3, "url_private": "u1"},
        {"id": "F2", "name": "a.txt", "mimetype": "text/plain", "size": 5, "url_private": "u2"},
    ]
    parsed = parse_message(fake.message_event(DM, USER, "see", files=files), me)
    assert parsed is not None
    assert [(f.name, f.is_image, f.url) for f in parsed.files] == [
        ("cat.png", True, "u1"),
        ("a.txt", False, "u2"),
    ]
    assert parsed.files[1].note() == "a.txt (text/plain, 5 bytes)"


def test_clean_text(me: BotIdentity) -> None:
    raw = (
        f"<@{me.user_id}> ask <@U0OTHER001|ann> in <#C0ABC|general> about "
        "<https://example.com|the site> &lt;soon&gt; <!here>"
    )
    assert clean_text(raw, me) == (
        "ask @ann in #general about the site (https://example.com) <soon> @here"
    )
    assert clean_text(f"two\n<@{me.user_id}|agentbot>  lines", me) == "two\nlines"


def test_commands_addressed_to_bots(me: BotIdentity) -> None:
    assert command_for_bot("/new", me) == "/new"
    assert command_for_bot(f"/topic@{me.name} trip", me) == "/topic trip"
    assert command_for_bot("/new@otherbot", me) is None
    assert command_for_bot("plain text@otherbot", me) == "plain text@otherbot"


def test_command_for_another_bot_is_dropped(fake: FakeSlack, me: BotIdentity) -> None:
    parsed = parse_message(fake.message_event(DM, USER, "/new@otherbot"), me)
    assert parsed is not None
    assert to_inbound(parsed, me) is None


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", "/help"),
        ("new", "/new"),
        ("topic  Trip plans", "/topic Trip plans"),
        ("TOPICS", "/topics"),
        ("title A name", "/title A name"),
        ("/stop", "/stop"),
        ("status", "/status"),
        ("what is this", "/help"),
    ],
)
def test_slash_text(text: str, command: str) -> None:
    assert slash_text(text) == command


def test_slash_command_message(fake: FakeSlack, me: BotIdentity) -> None:
    in_dm = command_message(fake.slash_command_payload("/agent", "new", channel=DM, user=USER), me)
    assert (in_dm.text, in_dm.is_direct, in_dm.addressed) == ("/new", True, True)
    assert in_dm.scope == f"slack:{fake.team_id}:user:{USER}"
    assert in_dm.message_id.startswith("command:")
    in_channel = command_message(
        fake.slash_command_payload("/agent", "status", channel=CHANNEL, user=USER), me
    )
    assert (in_channel.is_direct, in_channel.target.chat_id, in_channel.target.thread_id) == (
        False,
        CHANNEL,
        None,
    )


def test_channel_kind() -> None:
    assert channel_kind("D1") == "im"
    assert channel_kind("G1") == "group"
    assert channel_kind("C1") == "channel"
    assert channel_kind("C1", "mpim") == "group"
    assert channel_kind("C1", "im") == "im"
