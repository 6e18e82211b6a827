"""The Discord adapter end to end: a real Gateway, discord.py, the fake Discord."""

from __future__ import annotations

import asyncio
import base64
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base import ChatTarget
from adapters.discord.adapter import DiscordAdapter, DiscordSettings
from adapters.discord.client import INTENTS_FIX, TOKEN_FIX
from adapters.errors import MessageTooLong, NotAllowed, RateLimited
from gateway import wiring
from gateway.app import Gateway
from gateway.config import GatewayConfig
from gateway.config_loader import load_config
from runtime.conversation import Conversation
from runtime.history import UserEntry
from tests.fakes.discord_api import FakeChannel, FakeDiscord, FakeGuild, FakeUser, Intents
from tests.fakes.scripted_provider import Gate, ScriptedProvider, Text
from tests.gateway_config import shorten_discord_timings
from tests.runtime_helpers import wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports audioop
    import discord.http

TOKEN = "fake-discord-token"
EYES = "\N{EYES}"
THREAD_FROM_MESSAGE = r"/channels/\d+/messages/\d+/threads"


@dataclass(kw_only=True, slots=True)
class World:
    fake: FakeDiscord
    guild: FakeGuild
    general: FakeChannel
    alice: FakeUser
    bob: FakeUser


@dataclass(kw_only=True, slots=True)
class Running:
    gateway: Gateway
    adapter: DiscordAdapter
    provider: ScriptedProvider


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = FakeDiscord(token=TOKEN, heartbeat_interval_ms=200)
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    guild = fake.add_guild("Test Guild", members=[alice, bob])
    await fake.start()
    try:
        general = fake.channels[guild.channel_ids[0]]
        yield World(fake=fake, guild=guild, general=general, alice=alice, bob=bob)
    finally:
        await fake.stop()


def load(
    tmp_path: Path,
    fake: FakeDiscord,
    extra: str = "",
    *,
    endpoints: bool = True,
    access: str = 'access = "open"',
) -> GatewayConfig:
    """A config with the echo model; ``endpoints=False`` leaves api_base and gateway_url
    at Discord's defaults."""
    urls = f'api_base = "{fake.api_base}"\ngateway_url = "{fake.gateway_url}"'
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
default_agent = "bot"
shutdown_grace = 1
[server]
port = 0
[storage]
path = "{tmp_path / "gateway.db"}"
[providers.main]
kind = "echo"
word_delay = 0
[agents.bot]
provider = "main"
model = "m1"
[agents.guildbot]
provider = "main"
model = "m2"
[adapters.discord]
token = "${{DISCORD_BOT_TOKEN}}"
{urls if endpoints else ""}
{access}
edit_interval = 0.05
{extra}
"""
    )
    return load_config(path, {"DISCORD_BOT_TOKEN": TOKEN})


@pytest.fixture(autouse=True)
def fast_discord(monkeypatch: pytest.MonkeyPatch) -> None:
    shorten_discord_timings(monkeypatch)


@asynccontextmanager
async def running(
    tmp_path: Path,
    fake: FakeDiscord,
    extra: str = "",
    *,
    connect: bool = True,
    endpoints: bool = True,
    access: str = 'access = "open"',
) -> AsyncIterator[Running]:
    config = load(tmp_path, fake, extra, endpoints=endpoints, access=access)
    provider = ScriptedProvider("main")
    gateway = Gateway(config, providers={"main": provider})
    await gateway.start()
    assert gateway.pipeline is not None
    adapter = gateway.pipeline.adapters["discord"]
    assert isinstance(adapter, DiscordAdapter)
    try:
        if connect:
            await wait_for(lambda: adapter.state == "connected")
        yield Running(gateway=gateway, adapter=adapter, provider=provider)
    finally:
        await gateway.stop()


def contents(fake: FakeDiscord, channel_id: int, *, by: int | None = None) -> list[str]:
    """What the channel shows (nothing while a thread does not exist yet)."""
    lines = fake.transcript(channel_id) if channel_id in fake.channels else []
    return [line.content for line in lines if by is None or line.author_id == by]


def bot_says(fake: FakeDiscord, channel_id: int) -> list[str]:
    """The bot's messages with text (a deferred slash command shows none until answered)."""
    return [c for c in contents(fake, channel_id, by=fake.bot.id) if c]


def user_entries(provider: ScriptedProvider, index: int = -1) -> list[UserEntry]:
    return [e for e in provider.requests[index].messages if isinstance(e, UserEntry)]


def conversation(r: Running, scope: str, agent: str = "bot") -> Conversation | None:
    assert r.gateway.runtime is not None
    return r.gateway.runtime.router.current(agent, scope)


# -- connecting ----------------------------------------------------------------------------


async def test_config_endpoints_intents_ready_and_commands_synced(
    tmp_path: Path, world: World
) -> None:
    fake = world.fake
    default_base = discord.http.Route.BASE
    async with running(tmp_path, fake) as r:
        assert fake.api_base == discord.http.Route.BASE
        ready, detail = r.gateway.readiness()
        assert ready, detail
        assert detail["adapters"]["discord"]["state"] == "connected"
        assert "fakebot" in r.adapter.state_detail
    wanted = Intents.GUILDS | Intents.GUILD_MESSAGES | Intents.DIRECT_MESSAGES
    assert fake.identifies[0]["intents"] == wanted | Intents.MESSAGE_CONTENT
    assert fake.gateway_queries[0]["compress"] == "zlib-stream"
    names = {c["name"] for c in fake.commands}
    assert {"new", "topic", "stop", "title", "status"} <= names
    options = {c["name"]: [o["name"] for o in c["options"]] for c in fake.commands}
    assert options["topic"] == options["title"] == ["text"]
    assert options["new"] == []
    assert default_base == discord.http.Route.BASE  # restored when the adapter stopped
    assert r.adapter.state == "stopped"


async def test_default_endpoints_leave_discord_py_settings_alone(
    tmp_path: Path, world: World
) -> None:
    fake = world.fake
    with fake.patch_discord():  # set by someone else: the default config must not undo it
        async with running(tmp_path, fake, endpoints=False) as r:
            assert fake.api_base == discord.http.Route.BASE
            dm = fake.open_dm(world.alice)
            await fake.user_sends(dm.id, world.alice, "hello")
            await fake.wait_for(lambda: bot_says(fake, dm.id) == ["ok"])
        assert r.adapter.state == "stopped"
        assert fake.api_base == discord.http.Route.BASE


def test_settings_from_the_section(tmp_path: Path) -> None:
    fake = FakeDiscord()
    config = load(tmp_path, fake, 'respond = "all"')
    assert config.adapters.discord is not None
    assert wiring.discord_settings(config.adapters.discord) == DiscordSettings(
        token=TOKEN,
        api_base=fake.api_base,
        gateway_url=fake.gateway_url,
        respond_all=True,
        access="open",
        identify_delay=0.0,  # the autouse fast_discord fixture's timings
        guild_ready_timeout=0.05,
    )


async def test_missing_message_content_intent_fails_for_good(tmp_path: Path, world: World) -> None:
    world.fake.disallow_privileged_intents(Intents.MESSAGE_CONTENT)
    async with running(tmp_path, world.fake, connect=False) as r:
        entry = r.gateway.supervised["discord"]
        await wait_for(lambda: r.gateway._tasks[0].done())
        assert entry.failed == INTENTS_FIX
        assert "Message Content Intent" in INTENTS_FIX
        assert "Bot > Privileged Gateway Intents" in INTENTS_FIX
        ready, detail = r.gateway.readiness()
        assert not ready
        assert detail["adapters"]["discord"] == {"state": "failed", "detail": INTENTS_FIX}
        assert r.adapter.state == "failed"
    assert len(world.fake.identifies) == 1  # not a crash loop


async def test_bad_token_fails_for_good_naming_the_setting(tmp_path: Path, world: World) -> None:
    world.fake.reject_token()
    async with running(tmp_path, world.fake, connect=False) as r:
        await wait_for(lambda: r.gateway._tasks[0].done())
        assert r.gateway.supervised["discord"].failed == TOKEN_FIX
    assert "DISCORD_BOT_TOKEN" in TOKEN_FIX
    assert "adapters.discord.token" in TOKEN_FIX
    assert [(c.path, c.status) for c in world.fake.calls] == [("/users/@me", 401)]


async def test_token_revoked_while_connected_closes_with_4004_and_fails(
    tmp_path: Path, world: World
) -> None:
    fake = world.fake
    async with running(tmp_path, fake) as r:
        fake.reject_token()
        await fake.close_with(4000, "unknown error")  # the client resumes; 4004 answers
        await wait_for(lambda: r.gateway._tasks[0].done())
        assert r.gateway.supervised["discord"].failed == TOKEN_FIX
        assert r.adapter.state == "failed"


async def test_dropped_connection_reconnects_and_readiness_follows(
    tmp_path: Path, world: World
) -> None:
    fake = world.fake
    dm = fake.open_dm(world.alice)
    async with running(tmp_path, fake) as r:
        await fake.drop_connection()
        await fake.wait_for(lambda: fake.resumes == 1)
        await wait_for(lambda: r.adapter.state == "connected")
        history = list(r.adapter.state_history)
        assert history[-3:] == ["connected", "reconnecting", "connected"]
        assert r.gateway.readiness()[0]
        r.provider.script(Text("still here"))
        await fake.user_sends(dm.id, world.alice, "are you there?")
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["still here"])
    assert len(fake.identifies) == 1


# -- direct messages -----------------------------------------------------------------------


async def test_dm_streams_send_then_edits_without_typing(tmp_path: Path, world: World) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        gate = Gate()
        r.provider.script(Text("Hello "), gate, Text("**world**"))
        await fake.user_sends(dm.id, alice, "hi there")
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["Hello"])
        gate.release()
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["Hello **world**"])
        [_, reply] = fake.transcript(dm.id)
        assert reply.edited
        # Text was visible at once, so no typing indicator (it shows after about 1 s).
        assert not fake.calls_to("POST", rf"/channels/{dm.id}/typing")
        conv = conversation(r, f"discord:user:{alice.id}")
        assert conv is not None
        assert conv.is_tmp
        [entry] = user_entries(r.provider)
        assert entry.text == "hi there"
        assert entry.speaker is not None
        assert (entry.speaker.name, entry.speaker.id) == ("Alice", f"discord:{alice.id}")


async def test_dm_topic_command_and_persistent_setting(tmp_path: Path, world: World) -> None:
    fake, alice, bob = world.fake, world.alice, world.bob
    dm_alice, dm_bob = fake.open_dm(alice), fake.open_dm(bob)
    async with running(tmp_path, fake, 'dm_conversation = "persistent"') as r:
        await fake.user_sends(dm_bob.id, bob, "remember me")
        await fake.wait_for(lambda: bot_says(fake, dm_bob.id) == ["ok"])
        conv = conversation(r, f"discord:user:{bob.id}")
        assert conv is not None
        assert conv.topic_key == "main"
        await fake.user_sends(dm_alice.id, alice, "/topic work")
        await fake.wait_for(lambda: len(bot_says(fake, dm_alice.id)) == 1)
        assert bot_says(fake, dm_alice.id)[0].startswith("Switched to topic work")
        await fake.user_sends(dm_alice.id, alice, "in the work topic")
        await fake.wait_for(lambda: len(bot_says(fake, dm_alice.id)) == 2)
        conv = conversation(r, f"discord:user:{alice.id}")
        assert conv is not None
        assert conv.topic_key == "work"


async def test_text_commands_strip_our_name_and_drop_other_bots(
    tmp_path: Path, world: World
) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        await fake.user_sends(dm.id, alice, "/new@someotherbot")
        await fake.user_sends(dm.id, alice, "/new@fakebot")
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["Started a new conversation."])
        await fake.user_sends(dm.id, alice, "/status")
        await fake.wait_for(lambda: len(bot_says(fake, dm.id)) == 2)
        assert bot_says(fake, dm.id)[1].startswith("Agent: bot")
        assert r.provider.requests == []


async def test_attachments_images_downloaded_and_others_noted(tmp_path: Path, world: World) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    png = b"\x89PNG\r\n\x1a\nfake image"
    app = web.Application()

    async def serve_png(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    app.router.add_get("/cat.png", serve_png)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cat.png"
    image = {"filename": "cat.png", "content_type": "image/png", "size": len(png), "url": url}
    notes = {"filename": "notes.txt", "content_type": "text/plain", "size": 5}
    try:
        async with running(tmp_path, fake) as r:
            await fake.user_sends(dm.id, alice, "look", attachments=[image, notes])
            await fake.wait_for(lambda: bot_says(fake, dm.id) == ["ok"])
    finally:
        await runner.cleanup()
    [entry] = user_entries(r.provider)
    assert entry.text == "look\n[attachment: notes.txt (text/plain, 5 bytes)]"
    [picture] = entry.images
    assert picture.media_type == "image/png"
    assert base64.b64decode(picture.data_base64) == png


async def test_messages_from_bots_are_dropped(tmp_path: Path, world: World) -> None:
    fake, alice = world.fake, world.alice
    other = fake.add_user("otherbot", bot=True)
    async with running(tmp_path, fake) as r:
        await fake.user_sends(world.general.id, other, "hey bot", mentions_bot=True)
        await fake.user_sends(world.general.id, alice, "hey bot", mentions_bot=True)
        threads = await fake.wait_for(
            lambda: [t for t in fake.transcript(world.general.id) if t.thread_name]
        )
        [thread_line] = threads
        assert thread_line.author_id == alice.id
        await fake.wait_for(lambda: bot_says(fake, thread_line.message_id) == ["ok"])
        assert len(r.provider.requests) == 1  # neither the bot nor our own replies


# -- guild channels and threads ------------------------------------------------------------


async def test_mention_opens_a_thread_named_from_first_words_and_renamed_once(
    tmp_path: Path, world: World
) -> None:
    fake, alice, bob, general = world.fake, world.alice, world.bob, world.general
    async with running(tmp_path, fake) as r:
        r.provider.script(Text("Let us plan."))
        await fake.user_sends(general.id, alice, "plan the launch party\nmore", mentions_bot=True)
        [line] = await fake.wait_for(lambda: fake.transcript(general.id))
        thread_id = line.message_id  # a thread from a message takes the message's id
        await fake.wait_for(lambda: bot_says(fake, thread_id) == ["Let us plan."])
        await fake.wait_for(lambda: fake.renames)
        assert [(x.old_name, x.new_name) for x in fake.renames] == [
            ("plan the launch party", "Scripted Title")
        ]
        [entry] = user_entries(r.provider)
        assert entry.text == "plan the launch party\nmore"
        assert entry.speaker is not None
        assert entry.speaker.name == "Alice"
        conv = conversation(r, f"discord:thread:{thread_id}")
        assert conv is not None
        assert conv.topic_key == str(thread_id)

        r.provider.script(Text("Noted."))
        await fake.user_sends(thread_id, bob, "I bring snacks")  # no mention needed
        await fake.wait_for(lambda: bot_says(fake, thread_id) == ["Let us plan.", "Noted."])
        entries = user_entries(r.provider)
        assert [(e.text, e.speaker.name if e.speaker else "") for e in entries] == [
            ("plan the launch party\nmore", "Alice"),
            ("I bring snacks", "Bob"),
        ]
        assert len(fake.renames) == 1  # renamed once
        assert contents(fake, general.id) == [f"<@{fake.bot.id}> plan the launch party\nmore"]


async def test_unaddressed_channel_message_is_not_answered(tmp_path: Path, world: World) -> None:
    fake, alice, general = world.fake, world.alice, world.general
    async with running(tmp_path, fake) as r:
        await fake.user_sends(general.id, alice, "just chatting")
        await fake.user_sends(general.id, alice, "now you", mentions_bot=True)
        lines = await fake.wait_for(lambda: fake.transcript(general.id))
        await fake.wait_for(lambda: bot_says(fake, lines[-1].message_id) == ["ok"])
        assert [line.thread_name for line in fake.transcript(general.id)] == [None, "now you"]
        assert len(r.provider.requests) == 1


async def test_respond_all_opens_threads_without_mention(tmp_path: Path, world: World) -> None:
    fake, alice, general = world.fake, world.alice, world.general
    async with running(tmp_path, fake, 'respond = "all"'):
        await fake.user_sends(general.id, alice, "anyone around")
        [line] = await fake.wait_for(lambda: fake.transcript(general.id))
        await fake.wait_for(lambda: bot_says(fake, line.message_id) == ["ok"])
        assert fake.transcript(general.id)[0].thread_name == "anyone around"


async def test_thread_refused_then_the_answer_is_a_reply_in_the_channel(
    tmp_path: Path, world: World
) -> None:
    fake, general = world.fake, world.general
    fake.fail_next("POST", r"/channels/\d+/messages/\d+/threads", 403, body={"code": 50013})
    async with running(tmp_path, fake) as r:
        asked = await fake.user_sends(general.id, world.alice, "no threads here", mentions_bot=True)
        await fake.wait_for(lambda: bot_says(fake, general.id) == ["ok"])
        [_, reply] = fake.transcript(general.id)
        assert reply.reply_to == int(asked["id"])
        assert conversation(r, f"discord:channel:{general.id}") is not None


async def test_allowlist_refuses_before_any_thread_is_opened_or_claimed(
    tmp_path: Path, world: World
) -> None:
    fake, alice, bob, general = world.fake, world.alice, world.bob, world.general
    theirs = fake.add_thread(general.id, "bob's thread", owner=bob)
    access = f'access = "allowlist"\nallowed_users = [{alice.id}]'
    async with running(tmp_path, fake, access=access) as r:
        await fake.user_sends(general.id, bob, "let me in", mentions_bot=True)
        await fake.wait_for(lambda: any(str(bob.id) in c for c in bot_says(fake, general.id)))
        await fake.user_sends(theirs.id, bob, "and here?", mentions_bot=True)
        await fake.wait_for(lambda: any(str(bob.id) in c for c in bot_says(fake, theirs.id)))
        # alice is allowed: her mention opens a thread, so threads do work here
        hello = await fake.user_sends(general.id, alice, "hello", mentions_bot=True)
        await fake.wait_for(lambda: bot_says(fake, int(hello["id"])) == ["ok"])
        [call] = fake.calls_to("POST", THREAD_FROM_MESSAGE)
        assert f"/messages/{hello['id']}/threads" in call.path
        assert fake.transcript(general.id)[0].thread_name is None  # bob's message
        assert await r.gateway.storage.get_binding("discord", str(theirs.id)) is None
        assert [e.text for e in user_entries(r.provider)] == ["hello"]
        assert len(r.provider.requests) == 1


async def test_bindings_match_guild_and_parent_channel(tmp_path: Path, world: World) -> None:
    fake, general = world.fake, world.general
    extra = f"""
[[bindings]]
adapter = "discord"
guild = "{world.guild.id}"
channel = "{general.id}"
agent = "guildbot"
"""
    async with running(tmp_path, fake, extra) as r:
        await fake.user_sends(general.id, world.alice, "who answers", mentions_bot=True)
        [line] = await fake.wait_for(lambda: fake.transcript(general.id))
        await fake.wait_for(lambda: bot_says(fake, line.message_id) == ["ok"])
        await fake.user_sends(line.message_id, world.alice, "and here?")
        await fake.wait_for(lambda: len(bot_says(fake, line.message_id)) == 2)
        assert [req.model for req in r.provider.requests] == ["m2", "m2"]


async def test_owned_threads_continue_after_a_restart(tmp_path: Path, world: World) -> None:
    fake, alice, general = world.fake, world.alice, world.general
    theirs = fake.add_thread(general.id, "their thread", owner=alice)
    other = fake.add_thread(general.id, "not ours", owner=alice)
    async with running(tmp_path, fake):
        await fake.user_sends(general.id, alice, "long story", mentions_bot=True)
        [line] = await fake.wait_for(lambda: fake.transcript(general.id))
        await fake.wait_for(lambda: bot_says(fake, line.message_id) == ["ok"])
        await fake.user_sends(theirs.id, alice, "join us", mentions_bot=True)  # adopted
        await fake.wait_for(lambda: bot_says(fake, theirs.id) == ["ok"])
    async with running(tmp_path, fake) as r:
        r.provider.script(Text("welcome back"))
        await fake.user_sends(line.message_id, alice, "continuing")
        await fake.wait_for(lambda: bot_says(fake, line.message_id) == ["ok", "welcome back"])
        assert [e.text for e in user_entries(r.provider)] == ["long story", "continuing"]
        await fake.user_sends(theirs.id, alice, "no mention after the restart")
        await fake.wait_for(lambda: bot_says(fake, theirs.id) == ["ok", "ok"])
        texts = [e.text for e in user_entries(r.provider)]
        assert texts == ["join us", "no mention after the restart"]
        # A thread the bot does not own still needs a mention.
        await fake.user_sends(other.id, alice, "not for the bot")
        await fake.user_sends(other.id, alice, "for the bot", mentions_bot=True)
        await fake.wait_for(lambda: bot_says(fake, other.id) == ["ok"])
        assert [e.text for e in user_entries(r.provider)] == ["for the bot"]


async def test_title_command_and_rate_limited_rename_is_skipped(
    tmp_path: Path, world: World
) -> None:
    fake, alice, general = world.fake, world.alice, world.general
    async with running(tmp_path, fake) as r:
        await fake.user_sends(general.id, alice, "name me", mentions_bot=True)
        [line] = await fake.wait_for(lambda: fake.transcript(general.id))
        thread_id = line.message_id
        await fake.wait_for(lambda: len(fake.renames) == 1)  # the generated title
        await fake.user_sends(thread_id, alice, "/title Second name")
        await fake.wait_for(lambda: "Title set: Second name" in bot_says(fake, thread_id))
        await fake.user_sends(thread_id, alice, "/title Third name")  # Discord allows 2 / 10 min
        await fake.wait_for(lambda: "Title set: Third name" in bot_says(fake, thread_id))
        r.provider.script(Text("not blocked"))
        await fake.user_sends(thread_id, alice, "still answering?")
        await fake.wait_for(lambda: "not blocked" in bot_says(fake, thread_id))
    assert [x.new_name for x in fake.renames] == ["Scripted Title", "Second name"]
    assert [c.status for c in fake.calls_to("PATCH", rf"/channels/{thread_id}")] == [200, 200, 429]


# -- outbound primitives -------------------------------------------------------------------


async def test_steering_is_acknowledged_with_eyes(tmp_path: Path, world: World) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        gate = Gate()
        r.provider.script(Text("working"), gate, Text(" done"))
        await fake.user_sends(dm.id, alice, "start")
        await asyncio.wait_for(gate.reached.wait(), 5)
        steer = await fake.user_sends(dm.id, alice, "also this")
        await fake.wait_for(lambda: fake.message(int(steer["id"])).reactions)
        assert fake.message(int(steer["id"])).reactions == [(EYES, fake.bot.id)]
        gate.release()
        await fake.wait_for(lambda: len(r.provider.requests) == 2)
        assert user_entries(r.provider)[-1].text == "also this"


async def test_an_edit_during_a_run_is_steered_and_acknowledged(
    tmp_path: Path, world: World
) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        gate = Gate()
        r.provider.script(Text("reading"), gate, Text(" done"))
        asked = await fake.user_sends(dm.id, alice, "what is 2+2")
        await asyncio.wait_for(gate.reached.wait(), 5)
        original = fake.message(int(asked["id"]))
        # The fake has no public "a person edits" step; this is what it does for one.
        fake._apply_edit(original, {"content": "what is 3+3"})
        await fake.wait_for(lambda: original.reactions)
        assert original.reactions == [(EYES, fake.bot.id)]
        gate.release()
        await fake.wait_for(lambda: len(r.provider.requests) == 2)
        assert user_entries(r.provider)[-1].text == "what is 3+3"


async def test_react_forbidden_too_long_and_rate_limits_are_mapped(
    tmp_path: Path, world: World
) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    target = ChatTarget(platform="discord", chat_id=str(dm.id))
    async with running(tmp_path, fake) as r:
        sent = await r.adapter.send(target, "a message", markup=True)
        forbidden = {"message": "Missing Permissions", "code": 50013}
        fake.fail_next("PUT", r"/channels/\d+/messages/\d+/reactions/.+", 403, body=forbidden)
        with pytest.raises(NotAllowed):
            await r.adapter.react(target, sent.message_id, EYES)
        with pytest.raises(MessageTooLong):
            await r.adapter.send(target, "x" * 2001, markup=True)
        fake.fail_next("POST", r"/channels/\d+/messages", 429, retry_after=0.05, via=False)
        with pytest.raises(RateLimited) as cloudflare:
            await r.adapter.send(target, "blocked", markup=True)
        fake.fail_next("PATCH", r"/channels/\d+/messages/\d+", 429, retry_after=45.0)
        with pytest.raises(RateLimited) as long_wait:
            await r.adapter.edit(sent, "edited", markup=True)
        await r.adapter.typing(target, False)  # a no-op: no call
    assert cloudflare.value.retry_after == pytest.approx(0.05)
    assert long_wait.value.retry_after == pytest.approx(45.0)
    assert contents(fake, dm.id) == ["a message"]
    assert not fake.calls_to("POST", rf"/channels/{dm.id}/typing")


async def test_a_429_during_a_reply_is_counted_and_the_reply_lands(
    tmp_path: Path, world: World
) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        fake.fail_next("POST", r"/channels/\d+/messages", 429, retry_after=0.05, via=False)
        await fake.user_sends(dm.id, alice, "hello")
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["ok"])
        assert r.gateway.metrics.rate_limited.value("discord") == 1


# -- slash commands ------------------------------------------------------------------------


async def test_slash_commands_are_forwarded_and_answered_in_the_interaction(
    tmp_path: Path, world: World
) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        option = {"name": "text", "type": 3, "value": "work"}
        await fake.user_runs_command(dm.id, alice, "topic", [option])
        said = await fake.wait_for(lambda: bot_says(fake, dm.id))
        assert said == ["Switched to topic work. Your next message goes there."]
        [callback] = fake.interaction_callbacks
        assert callback.type == 5  # deferred: "thinking", then edited with the answer
        await fake.user_sends(dm.id, alice, "filed under work")
        await fake.wait_for(lambda: len(bot_says(fake, dm.id)) == 2)
        conv = conversation(r, f"discord:user:{alice.id}")
        assert conv is not None
        assert conv.topic_key == "work"

        await fake.user_sends(world.general.id, alice, "a thread", mentions_bot=True)
        [line] = await fake.wait_for(lambda: fake.transcript(world.general.id))
        await fake.wait_for(lambda: bot_says(fake, line.message_id) == ["ok"])
        await fake.user_runs_command(line.message_id, alice, "status")
        await fake.wait_for(lambda: len(bot_says(fake, line.message_id)) == 2)
        status = bot_says(fake, line.message_id)[1]
        assert f"topic {line.message_id}" in status
        await fake.user_runs_command(line.message_id, alice, "stop")
        await fake.wait_for(lambda: "Nothing is running." in bot_says(fake, line.message_id))


async def test_a_slash_command_the_pipeline_does_not_answer_is_closed(
    tmp_path: Path, world: World
) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as r:
        assert r.gateway.pipeline is not None
        r.gateway.pipeline.accepting = False  # as while shutting down
        await fake.user_runs_command(dm.id, alice, "status")
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["(no reply)"])


async def test_command_sync_failure_is_not_fatal(tmp_path: Path, world: World) -> None:
    fake, alice = world.fake, world.alice
    fake.fail_next("PUT", r"/applications/\d+/commands", 400)
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake):
        await fake.user_sends(dm.id, alice, "/new")
        await fake.wait_for(lambda: bot_says(fake, dm.id) == ["Started a new conversation."])
    assert fake.commands == []


async def test_delete_removes_the_bots_message(tmp_path: Path, world: World) -> None:
    fake, alice = world.fake, world.alice
    dm = fake.open_dm(alice)
    target = ChatTarget(platform="discord", chat_id=str(dm.id))
    async with running(tmp_path, fake) as r:
        await r.adapter.send(target, "kept", markup=True)
        spilled = await r.adapter.send(target, "spilled", markup=True)
        await r.adapter.delete(spilled)
        assert bot_says(fake, dm.id) == ["kept"]
        assert fake.deleted_messages == [int(spilled.message_id)]
