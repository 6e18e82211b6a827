"""Discord message and interaction conversion, without a server: real discord.py objects
built from the JSON the fake Discord would send."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.base import ChatTarget
from adapters.common.identity import BotIdentity
from adapters.common.sizes import human_size
from adapters.discord.inbound import (
    DEFAULT_THREAD_NAME,
    channel_place,
    clean_text,
    dm_place,
    interaction_to_inbound,
    is_chat_message,
    is_command,
    mentions_bot,
    split_attachments,
    thread_name,
    thread_place,
    to_inbound,
)
from runtime.history import Image
from tests.fakes.discord_api import FakeChannel, FakeDiscord, FakeUser

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

MB = 1024 * 1024


@dataclass(kw_only=True, slots=True)
class Offline:
    """A discord.py connection state fed by hand, as READY and GUILD_CREATE would."""

    fake: FakeDiscord
    state: Any
    bot: BotIdentity
    alice: FakeUser
    bob: FakeUser
    guild: discord.Guild
    general: FakeChannel
    thread: FakeChannel
    dm: FakeChannel

    def channel(self, fake_channel: FakeChannel) -> discord.abc.Messageable:
        if fake_channel.type == 1:
            data: Any = fake_channel.to_json()  # discord.py types payloads as TypedDicts
            return discord.DMChannel(me=self.state.user, state=self.state, data=data)
        found = self.guild.get_channel_or_thread(fake_channel.id)
        assert isinstance(found, discord.TextChannel | discord.Thread)
        return found

    async def message(
        self,
        where: FakeChannel,
        author: FakeUser,
        content: str,
        *,
        mentions_bot: bool = False,
        attachments: Sequence[Mapping[str, Any]] = (),
        **fields: Any,
    ) -> discord.Message:
        payload: Any = await self.fake.user_sends(
            where.id, author, content, mentions_bot=mentions_bot, attachments=attachments
        )
        channel: Any = self.channel(where)
        return discord.Message(state=self.state, channel=channel, data=payload | fields)

    async def interaction(self, where: FakeChannel, name: str, text: str = "") -> Any:
        options = [{"name": "text", "type": 3, "value": text}] if text else []
        payload: Any = await self.fake.user_runs_command(where.id, self.alice, name, options)
        return discord.Interaction(data=payload, state=self.state)


@pytest.fixture
def offline() -> Offline:
    fake = FakeDiscord()
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    fake_guild = fake.add_guild("Test Guild", members=[alice, bob])
    general = fake.channels[fake_guild.channel_ids[0]]
    thread = fake.add_thread(general.id, "a thread", owner=alice)
    client = discord.Client(intents=discord.Intents.none())
    state = client._connection
    me: Any = fake.bot.to_json()
    state.user = discord.ClientUser(state=state, data=me)
    guild_json: Any = {
        "id": str(fake_guild.id),
        "name": fake_guild.name,
        "owner_id": str(alice.id),
        "roles": [],
        "emojis": [],
        "features": [],
        "members": [],
        "channels": [general.to_json()],
        "threads": [thread.to_json()],
    }
    guild = discord.Guild(data=guild_json, state=state)
    state._add_guild(guild)
    return Offline(
        fake=fake,
        state=state,
        bot=BotIdentity(user_id=str(fake.bot.id), name=fake.bot.username),
        alice=alice,
        bob=bob,
        guild=guild,
        general=general,
        thread=thread,
        dm=fake.open_dm(alice),
    )


# -- text ----------------------------------------------------------------------------------


async def test_mention_is_stripped_and_other_mentions_read_as_names(offline: Offline) -> None:
    bob = f"<@{offline.bob.id}>"
    message = await offline.message(
        offline.general, offline.alice, f"hey <@!{offline.bot.user_id}> ask {bob} please"
    )
    assert mentions_bot(message, offline.bot.user_id)
    assert clean_text(message, offline.bot) == "hey   ask @Bob please"
    plain = await offline.message(offline.general, offline.alice, "no mention here")
    assert not mentions_bot(plain, offline.bot.user_id)
    assert clean_text(plain, offline.bot) == "no mention here"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("/new@fakebot", "/new"),
        ("/topic@FakeBot work stuff", "/topic work stuff"),
        ("/new@someotherbot", None),
        ("/status", "/status"),
        ("/etc/hosts is odd", "/etc/hosts is odd"),
    ],
)
async def test_commands_for_us_lose_the_suffix_and_others_are_dropped(
    offline: Offline, content: str, expected: str | None
) -> None:
    message = await offline.message(offline.dm, offline.alice, content)
    assert clean_text(message, offline.bot) == expected


async def test_mention_then_command(offline: Offline) -> None:
    message = await offline.message(offline.general, offline.alice, "/new", mentions_bot=True)
    text = clean_text(message, offline.bot)
    assert text == "/new"
    assert is_command(text)
    assert not is_command("hello /new")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plan the launch", "plan the launch"),
        ("\n\n  first   line here \nsecond line", "first line here"),
        ("", DEFAULT_THREAD_NAME),
        ("   \n ", DEFAULT_THREAD_NAME),
    ],
)
def test_thread_name_from_the_first_words(text: str, expected: str) -> None:
    assert thread_name(text) == expected


def test_long_thread_names_are_cut_at_a_word() -> None:
    text = " ".join(["word"] * 40)  # 199 characters
    name = thread_name(text)
    assert len(name) <= 100
    assert name.endswith("word\N{HORIZONTAL ELLIPSIS}")
    assert len(thread_name("x" * 300)) == 100


# -- places --------------------------------------------------------------------------------


def test_places_give_scope_topic_target_and_match() -> None:
    dm = dm_place(7, 70)
    assert (dm.scope, dm.topic, dm.is_direct, dict(dm.match)) == ("discord:user:7", None, True, {})
    assert dm.target == ChatTarget(platform="discord", chat_id="70")

    thread = thread_place(99, parent_id=5, guild_id=1, extra={"message_channel": "5"})
    assert (thread.scope, thread.topic, thread.is_direct) == ("discord:thread:99", "99", False)
    assert (thread.target.chat_id, thread.target.thread_id) == ("99", "99")
    assert thread.target.extra == {"message_channel": "5"}
    assert thread.match == {"guild": "1", "channel": "5"}

    channel = channel_place(5, guild_id=1, reply_to=42)
    assert channel.scope == "discord:channel:5"
    assert (channel.target.chat_id, channel.target.reply_to) == ("5", "42")
    assert channel.match == {"guild": "1", "channel": "5"}


async def test_dm_message_to_inbound(offline: Offline) -> None:
    message = await offline.message(offline.dm, offline.alice, "hi")
    place = dm_place(offline.alice.id, offline.dm.id)
    inbound = to_inbound(message, place, text="hi", addressed=False)
    assert inbound.platform == "discord"
    assert inbound.message_id == str(message.id)
    assert (inbound.user_id, inbound.user_name) == (str(offline.alice.id), "Alice")
    assert (inbound.scope, inbound.is_direct, inbound.addressed) == (
        f"discord:user:{offline.alice.id}",
        True,
        True,
    )
    assert not inbound.from_bot
    assert not inbound.edited


async def test_thread_message_keeps_its_speaker(offline: Offline) -> None:
    message = await offline.message(offline.thread, offline.bob, "me too")
    place = thread_place(offline.thread.id, parent_id=offline.general.id, guild_id=offline.guild.id)
    image = Image(media_type="image/png", data_base64="AA==")
    inbound = to_inbound(
        message, place, text="me too", addressed=True, images=(image,), notes=["a.txt (x, 1)"]
    )
    assert (inbound.user_name, inbound.topic) == ("Bob", str(offline.thread.id))
    assert inbound.target.thread_id == str(offline.thread.id)
    assert inbound.match == {"guild": str(offline.guild.id), "channel": str(offline.general.id)}
    assert (inbound.images, inbound.attachment_notes) == ((image,), ("a.txt (x, 1)",))


async def test_bots_webhooks_and_edits(offline: Offline) -> None:
    other = offline.fake.add_user("otherbot", bot=True)
    place = dm_place(offline.alice.id, offline.dm.id)
    by_bot = await offline.message(offline.dm, other, "beep")
    assert to_inbound(by_bot, place, text="beep", addressed=True).from_bot
    hook = await offline.message(offline.dm, offline.alice, "hooked", webhook_id="123")
    assert to_inbound(hook, place, text="hooked", addressed=True).from_bot
    edited_at = "2024-01-02T03:04:05+00:00"
    edit = await offline.message(offline.dm, offline.alice, "v2", edited_timestamp=edited_at)
    inbound = to_inbound(edit, place, text="v2", addressed=True, edited=True)
    assert inbound.edited
    assert inbound.message_id == f"{edit.id}:edit:1704164645.000"


async def test_only_plain_messages_and_replies_are_chat(offline: Offline) -> None:
    plain = await offline.message(offline.general, offline.alice, "hello")
    joined = await offline.message(offline.general, offline.alice, "", type=7)
    pinned = await offline.message(offline.general, offline.alice, "", type=6)
    assert is_chat_message(plain)
    assert not is_chat_message(joined)
    assert not is_chat_message(pinned)


# -- attachments ---------------------------------------------------------------------------


async def test_images_are_downloaded_and_other_files_noted(offline: Offline) -> None:
    files: list[dict[str, Any]] = [
        {"filename": "cat.png", "content_type": "image/png", "size": 2048},
        {"filename": "huge.jpg", "content_type": "image/jpeg", "size": 20 * MB},
        {"filename": "notes.txt", "content_type": "text/plain; charset=utf-8", "size": 5},
        {"filename": "blob", "content_type": None, "size": 3 * MB},
    ]
    message = await offline.message(offline.dm, offline.alice, "see", attachments=files)
    images, notes = split_attachments(message.attachments, 10 * MB)
    assert [a.filename for a in images] == ["cat.png"]
    assert notes == [
        "huge.jpg (image/jpeg, 20.0 MB)",
        "notes.txt (text/plain, 5 bytes)",
        "blob (unknown type, 3.0 MB)",
    ]


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * MB)] == [
        "0 bytes",
        "1023 bytes",
        "1.5 KB",
        "5.0 MB",
    ]


# -- slash commands ------------------------------------------------------------------------


async def test_interactions_become_text_commands_in_their_place(offline: Offline) -> None:
    in_dm = interaction_to_inbound(await offline.interaction(offline.dm, "topic", "work"), "/x")
    assert (in_dm.scope, in_dm.is_direct, in_dm.addressed) == (
        f"discord:user:{offline.alice.id}",
        True,
        True,
    )
    assert in_dm.target.chat_id == str(offline.dm.id)
    assert in_dm.text == "/x"
    assert in_dm.target.extra["interaction"] == in_dm.message_id

    interaction = await offline.interaction(offline.thread, "status")
    in_thread = interaction_to_inbound(interaction, "/status")
    assert (in_thread.scope, in_thread.topic) == (
        f"discord:thread:{offline.thread.id}",
        str(offline.thread.id),
    )
    assert in_thread.target.thread_id == str(offline.thread.id)
    assert in_thread.match == {"guild": str(offline.guild.id), "channel": str(offline.general.id)}
    assert in_thread.user_name == "Alice"

    in_channel = interaction_to_inbound(await offline.interaction(offline.general, "new"), "/new")
    assert in_channel.scope == f"discord:channel:{offline.general.id}"
    assert (in_channel.topic, in_channel.is_direct) == (None, False)
