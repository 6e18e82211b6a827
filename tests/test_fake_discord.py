"""The fake Discord driven by the real discord.py client, so adapter tests can trust it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.discord_api import FakeChannel, FakeDiscord, FakeGuild, FakeUser, Intents

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands

TOKEN = "fake-bot-token"
TIMEOUT = 5.0


class RecordingClient(discord.Client):
    """A plain discord.Client that queues what it receives so tests can await it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.ready = asyncio.Event()
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.new_threads: asyncio.Queue[discord.Thread] = asyncio.Queue()
        self.thread_updates: asyncio.Queue[discord.Thread] = asyncio.Queue()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author != self.user:
            await self.inbox.put(message)

    async def on_thread_create(self, thread: discord.Thread) -> None:
        await self.new_threads.put(thread)

    async def on_thread_update(self, before: discord.Thread, after: discord.Thread) -> None:
        await self.thread_updates.put(after)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before every re-IDENTIFY to respect Discord's identify limit.
        return None

    async def next_message(self) -> discord.Message:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)


def default_intents() -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = True
    return intents


def make_client(intents: discord.Intents | None = None) -> RecordingClient:
    # A short guild_ready_timeout: the fake sends every GUILD_CREATE right after READY.
    return RecordingClient(
        intents=intents or default_intents(),
        guild_ready_timeout=0.05,
        max_ratelimit_timeout=30.0,
    )


@contextlib.asynccontextmanager
async def running(client: RecordingClient, token: str = TOKEN) -> AsyncIterator[RecordingClient]:
    """Run the client until on_ready, yield it, then close it and await its task."""
    async with client:
        task = asyncio.create_task(client.start(token))
        ready = asyncio.create_task(client.ready.wait())
        try:
            first = asyncio.FIRST_COMPLETED
            done, _ = await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when=first)
            if task in done:
                task.result()
            assert ready in done, "client did not become ready"
            yield client
        finally:
            ready.cancel()
            await client.close()
            await asyncio.wait_for(task, TIMEOUT)


@dataclass(frozen=True, kw_only=True, slots=True)
class World:
    fake: FakeDiscord
    guild: FakeGuild
    general: FakeChannel
    alice: FakeUser


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = FakeDiscord(token=TOKEN)
    alice = fake.add_user("alice")
    guild = fake.add_guild("Test Guild", members=[alice])
    await fake.start()
    try:
        with fake.patch_discord():
            general = fake.channels[guild.channel_ids[0]]
            yield World(fake=fake, guild=guild, general=general, alice=alice)
    finally:
        await fake.stop()


async def test_login_connect_ready_with_zlib_stream_and_heartbeats(world: World) -> None:
    world.fake.heartbeat_interval_ms = 20
    async with running(make_client()) as client:
        assert client.user is not None
        assert client.user.id == world.fake.bot.id
        assert client.application_id == world.fake.application_id
        channel = client.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        assert channel.name == "general"
        assert channel.guild.id == world.guild.id
        await world.fake.wait_for(lambda: world.fake.heartbeat_acks >= 3)
        assert client.latency < 1.0
    assert world.fake.identifies[0]["intents"] == default_intents().value
    assert world.fake.gateway_queries[0]["compress"] == "zlib-stream"
    assert [c.path for c in world.fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]


async def test_guild_mention_and_dm_reach_on_message_with_content(world: World) -> None:
    fake = world.fake
    async with running(make_client()) as client:
        await fake.user_sends(world.general.id, world.alice, "hello bot", mentions_bot=True)
        message = await client.next_message()
        assert message.content == f"<@{fake.bot.id}> hello bot"
        assert client.user in message.mentions
        assert message.guild is not None
        assert message.guild.id == world.guild.id
        assert message.author.id == world.alice.id

        dm = fake.open_dm(world.alice)
        attachment = {"filename": "notes.txt", "size": 5}
        await fake.user_sends(dm.id, world.alice, "private words", attachments=[attachment])
        message = await client.next_message()
        assert isinstance(message.channel, discord.DMChannel)
        assert message.content == "private words"
        assert message.attachments[0].filename == "notes.txt"


async def test_without_message_content_intent_guild_content_is_empty_unless_mentioned(
    world: World,
) -> None:
    intents = default_intents()
    intents.message_content = False
    async with running(make_client(intents)) as client:
        await world.fake.user_sends(world.general.id, world.alice, "not for you")
        assert (await client.next_message()).content == ""
        await world.fake.user_sends(world.general.id, world.alice, "for you", mentions_bot=True)
        assert (await client.next_message()).content.endswith("for you")


async def test_events_without_their_intent_are_not_delivered(world: World) -> None:
    intents = default_intents()
    intents.guild_messages = False
    async with running(make_client(intents)) as client:
        await world.fake.user_sends(world.general.id, world.alice, "in the guild")
        dm = world.fake.open_dm(world.alice)
        await world.fake.user_sends(dm.id, world.alice, "in a DM")
        assert (await client.next_message()).content == "in a DM"


async def test_send_edit_and_too_long_message(world: World) -> None:
    async with running(make_client()) as client:
        channel = client.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        await world.fake.user_sends(world.general.id, world.alice, "write something")
        asked = await client.next_message()
        sent = await asked.reply("first draft")
        await sent.edit(content="final text")
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("x" * 2001)
        upload = await channel.send(file=discord.File(io.BytesIO(b"# long"), filename="reply.md"))
    assert excinfo.value.status == 400
    assert excinfo.value.code == 50035
    assert world.fake.message(upload.id).attachments[0]["filename"] == "reply.md"
    [_, line, _] = world.fake.transcript(world.general.id)
    assert (line.content, line.edited, line.author_id) == ("final text", True, world.fake.bot.id)
    assert line.reply_to == asked.id


async def test_thread_from_message_rename_budget_and_reply(world: World) -> None:
    fake = world.fake
    async with running(make_client()) as client:
        await fake.user_sends(world.general.id, world.alice, "start a thread", mentions_bot=True)
        message = await client.next_message()
        thread = await message.create_thread(name="start a thread")
        assert thread.id == message.id
        created = await asyncio.wait_for(client.new_threads.get(), TIMEOUT)
        assert created.id == thread.id
        assert created.parent_id == world.general.id

        await thread.send("reply in thread")
        await fake.user_sends(thread.id, world.alice, "follow-up without mention")
        follow_up = await client.next_message()
        assert isinstance(follow_up.channel, discord.Thread)
        assert follow_up.channel.id == thread.id

        await thread.edit(name="A title")
        updated = await asyncio.wait_for(client.thread_updates.get(), TIMEOUT)
        assert updated.name == "A title"
        await thread.edit(name="A better title")
        with pytest.raises(discord.RateLimited) as excinfo:
            await thread.edit(name="One rename too many")
        with pytest.raises(discord.HTTPException):
            await thread.edit(name="n" * 101)
    assert excinfo.value.retry_after > 60
    assert [r.new_name for r in fake.renames] == ["A title", "A better title"]
    [line] = fake.transcript(world.general.id)
    assert line.thread_name == "A better title"
    in_thread = [line.content for line in fake.transcript(thread.id)]
    assert in_thread == ["reply in thread", "follow-up without mention"]


async def test_reaction_with_unicode_emoji_and_typing(world: World) -> None:
    fake = world.fake
    async with running(make_client()) as client:
        await fake.user_sends(world.general.id, world.alice, "react to me")
        message = await client.next_message()
        await message.add_reaction("\N{EYES}")
        await message.channel.typing()
    assert fake.transcript(world.general.id)[0].reactions == ("\N{EYES}",)
    [typing] = fake.calls_to("POST", rf"/channels/{world.general.id}/typing")
    assert typing.status == 204


async def test_429_with_via_is_retried_and_without_via_is_an_error(world: World) -> None:
    fake = world.fake
    async with running(make_client()) as client:
        channel = client.get_channel(world.general.id)
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", r"/channels/\d+/messages", status=429, retry_after=0.05)
        await channel.send("after a rate limit")
        fake.fail_next("POST", r"/channels/\d+/messages", status=429, via=False)
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("blocked by cloudflare")
        fake.fail_next("POST", r"/channels/\d+/messages", status=403, body={"code": 50013})
        with pytest.raises(discord.Forbidden):
            await channel.send("missing permissions")
    assert excinfo.value.status == 429
    statuses = [c.status for c in fake.calls_to("POST", r"/channels/\d+/messages")]
    assert statuses == [429, 200, 429, 403]
    assert [line.content for line in fake.transcript(world.general.id)] == ["after a rate limit"]


async def test_privileged_intent_not_allowed_raises_privileged_intents_required(
    world: World,
) -> None:
    world.fake.disallow_privileged_intents(Intents.MESSAGE_CONTENT)
    async with make_client() as client:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.start(TOKEN), TIMEOUT)


async def test_required_intent_missing_raises_privileged_intents_required(world: World) -> None:
    world.fake.require_intents(Intents.MESSAGE_CONTENT)
    intents = default_intents()
    intents.message_content = False
    async with make_client(intents) as client:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.start(TOKEN), TIMEOUT)


async def test_bad_token_raises_login_failure(world: World) -> None:
    world.fake.reject_token()
    async with make_client() as client:
        with pytest.raises(discord.LoginFailure):
            await asyncio.wait_for(client.start(TOKEN), TIMEOUT)
    assert [(c.path, c.status) for c in world.fake.calls] == [("/users/@me", 401)]


async def test_dropped_connection_resumes_and_replays_missed_message(world: World) -> None:
    fake = world.fake
    async with running(make_client()) as client:
        await fake.drop_connection()
        await fake.user_sends(world.general.id, world.alice, "sent while you were away")
        message = await client.next_message()
        assert message.content == "sent while you were away"
        await fake.wait_for(lambda: fake.resumes == 1)
        await fake.user_sends(world.general.id, world.alice, "and after")
        assert (await client.next_message()).content == "and after"
    assert len(fake.identifies) == 1


async def test_invalid_session_and_close_code_lead_to_a_new_session(world: World) -> None:
    fake = world.fake
    async with running(make_client()) as client:
        client.ready.clear()
        await fake.invalidate_session()
        await asyncio.wait_for(client.ready.wait(), TIMEOUT)
        assert len(fake.identifies) == 2
        await fake.close_with(4000, "unknown error")
        await fake.wait_for(lambda: fake.resumes == 1)
        await fake.user_sends(world.general.id, world.alice, "still there?")
        assert (await client.next_message()).content == "still there?"


async def test_slash_command_sync_interaction_and_callback(world: World) -> None:
    fake = world.fake
    client = make_client()
    tree = app_commands.CommandTree(client)

    @tree.command(name="ping", description="Answer pong")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    async with running(client):
        synced = await tree.sync()
        assert [c.name for c in synced] == ["ping"]
        await fake.user_runs_command(world.general.id, world.alice, "ping")
        [callback] = await fake.wait_for(lambda: fake.interaction_callbacks)
    assert [c["name"] for c in fake.commands] == ["ping"]
    assert (callback.type, callback.json["data"]["content"]) == (4, "pong")
    assert [line.content for line in fake.transcript(world.general.id)] == ["pong"]
