"""Telegram benchmark (issue 4). Run: .venv/bin/python -m bench.telegram_bench [chats]

Against one fake Bot API, in one process: (a) a minimal echo bot written directly with
python-telegram-bot (an ``Application`` with one ``MessageHandler``, polling) and (b) the
gateway (the Telegram adapter, the echo provider with ``word_delay = 0``, access open).
N private chats (default 200) each send one message, in two arrival patterns:

- burst: all N messages queued at once, which measures throughput (a chat's latency is
  mostly its wait behind the others);
- paced: one message every ``PACE`` seconds, below both bots' capacity, which measures
  the latency of one message through each stack.

Measured per pattern: median and p95 latency from the update being queued at the fake to
the first sendMessage in that chat, messages per second (N over the time from the first
queued message to the last chat's first sendMessage), and the gateway/bare ratio of the
medians (target <= 1.5). Each pattern runs ROUNDS times on fresh chats, pooled; one
warm-up message per bot is left out.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

import adapters.telegram.adapter  # noqa: F401  (sets PTB_TIMEDELTA for python-telegram-bot)
from gateway.app import Gateway
from gateway.config_loader import load_config
from tests.fakes.telegram_api import FakeTelegram

JSON = dict[str, Any]
TIMEOUT = 120.0
ROUNDS = 3  # one burst varies from run to run: pool several
PACE = 0.01  # seconds between messages in the paced pattern (100 messages/s)
PATTERNS = {"burst": 0.0, "paced": PACE}


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    latencies: list[float]
    elapsed: float

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.latencies, n=20)[-1]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed


async def first_sends(fake: FakeTelegram, chats: set[int], start: int) -> dict[int, float]:
    """When each chat got its first sendMessage, stamped as the fake records it."""
    seen: dict[int, float] = {}
    index = start

    def progress() -> bool:
        nonlocal index
        calls = fake.calls()
        now = time.perf_counter()
        for call in calls[index:]:
            if call.method == "sendMessage" and call.status == 200:
                chat = int(call.params["chat_id"])
                if chat in chats:
                    seen.setdefault(chat, now)
        index = len(calls)
        return len(seen) == len(chats)

    await fake.wait_for(progress, timeout=TIMEOUT)
    return seen


async def one_round(fake: FakeTelegram, count: int, gap: float) -> Result:
    users = [fake.make_user(f"User {i}") for i in range(count)]
    chats = {fake.private_chat(user): user for user in users}
    watcher = asyncio.create_task(first_sends(fake, set(chats), len(fake.calls())))
    queued: dict[int, float] = {}
    for chat, user in chats.items():
        queued[chat] = time.perf_counter()
        fake.user_sends(chat, user, f"hello from {chat}")
        if gap:
            await asyncio.sleep(gap)  # pacing the arrivals, not waiting for a result
    seen = await watcher
    latencies = [seen[chat] - queued[chat] for chat in chats]
    return Result(latencies=latencies, elapsed=max(seen.values()) - min(queued.values()))


async def measure(fake: FakeTelegram, count: int) -> dict[str, Result]:
    await one_round(fake, 1, 0.0)  # warm-up: connections, first-use imports
    results = {}
    for pattern, gap in PATTERNS.items():
        rounds = [await one_round(fake, count, gap) for _ in range(ROUNDS)]
        results[pattern] = Result(
            latencies=[latency for result in rounds for latency in result.latencies],
            elapsed=sum(result.elapsed for result in rounds),
        )
    return results


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.message is not None and update.message.text is not None:
        await update.message.reply_text(update.message.text)


@asynccontextmanager
async def bare_bot(fake: FakeTelegram) -> AsyncIterator[None]:
    app: Application[Any, Any, Any, Any, Any, Any] = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=dtm.timedelta(seconds=10))
        await app.start()
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


@asynccontextmanager
async def gateway_bot(fake: FakeTelegram) -> AsyncIterator[None]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gateway.toml"
        path.write_text(
            f"""
default_agent = "bot"
[server]
port = 0
[storage]
path = "{Path(folder) / "gateway.db"}"
[providers.main]
kind = "echo"
word_delay = 0
[agents.bot]
provider = "main"
model = "echo"
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = "{fake.base_url}"
base_file_url = "{fake.base_file_url}"
access = "open"
"""
        )
        gateway = Gateway(load_config(path, {"TELEGRAM_BOT_TOKEN": fake.token}))
        await gateway.start()
        try:
            entry = gateway.supervised["telegram"]
            await fake.wait_for(lambda: entry.state == "connected", timeout=TIMEOUT)
            yield
        finally:
            await gateway.stop()


def line(name: str, result: Result) -> str:
    return (
        f"  {name:<8} median {result.median * 1000:6.1f} ms   "
        f"p95 {result.p95 * 1000:6.1f} ms   {result.rate:6.1f} msg/s"
    )


async def main(count: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    async with FakeTelegram() as fake:
        async with bare_bot(fake):
            bare = await measure(fake, count)
        async with gateway_bot(fake):
            gateway = await measure(fake, count)
    print(f"Telegram: {count} private chats, one message each, {ROUNDS} rounds pooled")
    for pattern in PATTERNS:
        how = "all at once" if pattern == "burst" else f"one every {PACE * 1000:.0f} ms"
        print(f"{pattern} ({how}):")
        print(line("bare", bare[pattern]))
        print(line("gateway", gateway[pattern]))
        ratio = gateway[pattern].median / bare[pattern].median
        print(f"  median latency ratio gateway/bare: {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
