"""Discord benchmark (issues 5 and 11).

Run: .venv/bin/python -m bench.discord_bench [dms] [threads] [429s]

The fake Discord (REST and gateway) and the offline echo model: 100 people write a DM and
20 mention the bot in a guild channel (each mention opens a thread), all at once, each
message 40 words echoed back at 50 ms a word (about 2 s of streaming per reply) with
Discord's default edit interval of 1 s. Two bots in turn, each against a fresh fake:

- **bare**: a minimal discord.py bot (``on_message``: open the thread for a mention, then
  send the whole echo at once): the floor of the library and this machine under the
  same burst, from the moment it has text to send (the message, or the thread, in hand)
  to the fake recording it.
- **gateway**: a real Gateway with the Discord adapter. Prints replies delivered in full,
  median and p95 time from the message reaching the fake to the reply's first visible
  message there, edits per reply, 429s seen by the gateway and answered by the fake, the
  wall time, and (issue 11) the time from the model's first token to that first visible
  text, against the bare bot's figure for the same step.

The optional third argument makes the fake answer that many of the gateway's message
sends and edits with a 429 (retry after 50 ms, as Discord does under load), which
discord.py waits out and retries itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import discord

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.client import gateway_intents
from adapters.discord.inbound import thread_name
from bench.first_token import FirstTokens, nearest_p95, summary
from gateway.app import Gateway, freeze_startup_heap
from gateway.config_loader import load_config
from gateway.wiring import discord_settings
from tests.fakes.discord_api import FakeChannel, FakeDiscord, FakeUser
from tests.runtime_helpers import wait_for

TOKEN = "bench-token"
WORDS = 40
WORD_DELAY = 0.05
TIMEOUT = 120.0


def config_text(tmp: Path, fake: FakeDiscord) -> str:
    return f"""
default_agent = "bot"
shutdown_grace = 5
[server]
port = 0
[storage]
path = "{tmp / "bench.db"}"
[providers.echo]
kind = "echo"
word_delay = {WORD_DELAY}
[agents.bot]
provider = "echo"
model = "echo"
[adapters.discord]
token = "{TOKEN}"
api_base = "{fake.api_base}"
gateway_url = "{fake.gateway_url}"
access = "open"
"""


def text_for(who: str) -> str:
    return " ".join(f"{who}-word{i}" for i in range(WORDS))


class Watch:
    """Re-checked by the fake after every change: when each awaited reply first showed up,
    and whether it is complete."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sent_at: dict[int, float] = {}  # channel -> when the user's message was posted
        self.expected: dict[int, str] = {}  # channel -> the full echo
        self.first_seen: dict[int, float] = {}
        self.done: set[int] = set()

    def replies(self, channel_id: int) -> list[str]:
        channel = self.fake.channels.get(channel_id)
        if channel is None:
            return []
        messages = (self.fake.messages[i] for i in channel.message_ids)
        return [m.content for m in messages if m.author.id == self.fake.bot.id]

    def check(self) -> bool:
        now = time.monotonic()
        for channel_id, expected in self.expected.items():
            if channel_id in self.done:
                continue
            replies = self.replies(channel_id)
            if replies and channel_id not in self.first_seen:
                self.first_seen[channel_id] = now
            if replies == [expected]:
                self.done.add(channel_id)
        return len(self.done) == len(self.expected)


@dataclasses.dataclass
class World:
    fake: FakeDiscord
    people: list[FakeUser]
    dms: list[FakeChannel]
    general_id: int
    dm_count: int


async def world(dm_count: int, thread_count: int) -> World:
    fake = FakeDiscord(token=TOKEN)
    people = [fake.add_user(f"user{i}") for i in range(dm_count + thread_count)]
    guild = fake.add_guild("Bench", members=people[dm_count:])
    general = fake.channels[guild.channel_ids[0]]
    dms = [fake.open_dm(person) for person in people[:dm_count]]
    await fake.start()
    return World(fake, people, dms, general.id, dm_count)


async def post_all(w: World, watch: Watch) -> None:
    """Every person posts at once: DMs first, then the mentions (each opens a thread)."""
    for dm, person in zip(w.dms, w.people[: w.dm_count], strict=True):
        text = text_for(person.username)
        watch.sent_at[dm.id], watch.expected[dm.id] = time.monotonic(), text
        await w.fake.user_sends(dm.id, person, text)
    for person in w.people[w.dm_count :]:
        text = text_for(person.username)
        sent = time.monotonic()
        payload = await w.fake.user_sends(w.general_id, person, text, mentions_bot=True)
        thread_id = int(payload["id"])  # a thread from a message takes the message's id
        watch.sent_at[thread_id], watch.expected[thread_id] = sent, text


class BareBot(discord.Client):
    """What a discord.py user writes first: echo each message, in a new thread for a
    mention. ``ready_at`` is when it had the text to send and the place to send it."""

    def __init__(self) -> None:
        super().__init__(intents=gateway_intents(), guild_ready_timeout=0.05)
        self.ready_at: dict[int, float] = {}

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        text = message.content.split("> ", 1)[-1]  # without the bot's mention
        place = (
            message.channel
            if message.guild is None
            else await message.create_thread(name=thread_name(text))
        )
        self.ready_at[place.id] = time.monotonic()
        await place.send(text)


async def run_bare(dm_count: int, thread_count: int) -> list[float]:
    """The bare bot's gaps, from having text to send to the fake recording it."""
    w = await world(dm_count, thread_count)
    bot = BareBot()
    try:
        with w.fake.patch_discord():
            await bot.login(TOKEN)
            connection = asyncio.create_task(bot.connect(reconnect=False))
            await asyncio.wait_for(bot.wait_until_ready(), 30)
            watch = Watch(w.fake)
            await post_all(w, watch)
            await w.fake.wait_for(watch.check, timeout=TIMEOUT)
        print(f"bare discord.py bot: {len(watch.done)} of {len(watch.expected)} echoes delivered")
        report_first(watch, "bare")
        return [watch.first_seen[c] - bot.ready_at[c] for c in watch.expected]
    finally:
        await bot.close()
        await asyncio.gather(connection, return_exceptions=True)
        await w.fake.stop()


async def run(dm_count: int, thread_count: int, rate_limited: int) -> None:
    bare = await run_bare(dm_count, thread_count)
    print(summary(bare, "bare: text in hand -> visible"))
    w = await world(dm_count, thread_count)
    fake = w.fake
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.toml"
        path.write_text(config_text(Path(tmp), fake))
        config = load_config(path, {})
        section = config.adapters.discord
        assert section is not None
        fast = dataclasses.replace(
            discord_settings(section), identify_delay=0.0, guild_ready_timeout=0.05
        )
        gateway = Gateway(config, adapters={"discord": DiscordAdapter(fast)})
        await gateway.start()
        freeze_startup_heap()  # as `serve` does
        if rate_limited:
            for method in ("POST", "PATCH"):
                pattern = r"/channels/\d+/messages(/\d+)?"
                fake.fail_next(method, pattern, 429, retry_after=0.05, times=rate_limited // 2)
        try:
            gaps = await measure(w, gateway)
        finally:
            await gateway.stop()
            await fake.stop()
    print(summary(gaps))
    bare_p95, p95 = nearest_p95(bare), nearest_p95(gaps)
    print(f"  p95 gateway/bare: {p95 * 1000:.1f} / {bare_p95 * 1000:.1f} ms = {p95 / bare_p95:.2f}")


async def measure(w: World, gateway: Gateway) -> list[float]:
    """The gateway's gaps, from the model's first token to the first visible text."""
    assert gateway.pipeline is not None
    adapter = gateway.pipeline.adapters["discord"]
    await wait_for(lambda: adapter.state == "connected")  # polled: the fake cannot see it
    watch = Watch(w.fake)
    tokens = FirstTokens(gateway)
    started = time.monotonic()
    await post_all(w, watch)
    await w.fake.wait_for(watch.check, timeout=TIMEOUT)
    wall = time.monotonic() - started
    report(w.fake, gateway, watch, wall)
    gaps = []
    for channel in watch.expected:
        token = tokens.in_channel(str(channel))
        assert token is not None, f"no first token seen for channel {channel}"
        gaps.append(watch.first_seen[channel] - token)
    return gaps


def report_first(watch: Watch, who: str) -> None:
    firsts = [watch.first_seen[c] - watch.sent_at[c] for c in watch.expected]
    print(
        f"{who}: time to first visible message: median {statistics.median(firsts) * 1000:.0f} "
        f"ms, p95 {nearest_p95(firsts) * 1000:.0f} ms, max {max(firsts) * 1000:.0f} ms"
    )


def report(fake: FakeDiscord, gateway: Gateway, watch: Watch, wall: float) -> None:
    edits = [c for c in fake.calls_to("PATCH", r"/channels/\d+/messages/\d+") if c.status == 200]
    fake_429 = sum(1 for call in fake.calls if call.status == 429)
    replies = len(watch.expected)
    metrics = gateway.metrics
    print(f"gateway: {replies} conversations, {len(watch.done)} replies delivered in full")
    report_first(watch, "gateway")
    # The gateway's histogram keeps buckets, not samples: its mean is what it can tell.
    inside = metrics.first_visible.total("discord") / max(1, metrics.first_visible.count("discord"))
    print(f"  of which inside the gateway (pipeline received -> sent): mean {inside * 1000:.0f} ms")
    print(f"edits per reply: {len(edits) / replies:.2f} (total {len(edits)})")
    print(f"sends: {metrics.sends.value('discord'):g}, thread renames: {len(fake.renames)}")
    print(f"429s: gateway {metrics.rate_limited.value('discord'):g}, fake answered {fake_429}")
    print(f"wall time until every reply was complete: {wall:.2f} s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # discord.py warns on every 429 it waits out
    args = [int(a) for a in sys.argv[1:4]]
    asyncio.run(run(*(args + [100, 20, 0][len(args) :])))
