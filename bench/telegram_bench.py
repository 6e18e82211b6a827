"""Telegram benchmark (issues 4 and 11).

Run: .venv/bin/python -m bench.telegram_bench [--chats 200] [--big 1000] [--model echo|openai]

The fake Bot API and the fake OpenAI-compatible server run in their own process
(``bench.telegram_host``), so this process's CPU time is the bot's alone. Against them,
in turn: (a) a minimal echo bot written directly with python-telegram-bot (an
``Application`` with one ``MessageHandler``, polling; with ``--model openai`` it first
streams the reply from the fake model with httpx, as a bare bot would) and (b) the gateway
(the Telegram adapter, access open, the echo provider with ``word_delay = 0`` or the
OpenAI-compatible provider against the same fake model).

Patterns (new private chats, one message each): ``sequential`` (the next message once the
previous reply arrived: the latency of one message through each stack), ``burst`` (N at
once, ROUNDS rounds pooled) and ``big`` (``--big`` chats at once, once: all must be
answered). A chat's latency runs from its update being queued at the fake to its first
sendMessage (the final reply; a draft does not count). Printed per pattern and bot: p50,
p95, messages per second, Bot API calls and CPU milliseconds per message; then the
gateway/bare ratios against the issue's targets, and any pool timeouts seen.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dtm
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

import adapters.telegram.adapter  # noqa: F401  (sets PTB_TIMEDELTA for python-telegram-bot)
from bench.bare_model import stream_completion
from bench.stats import Latencies, pooled
from gateway.app import Gateway, freeze_startup_heap
from gateway.config_loader import load_config

JSON = dict[str, Any]
TIMEOUT = 300.0
ROUNDS = 3  # one burst varies from run to run: pool several
SEQUENTIAL = 100
WORDS = 20  # chunks in a streamed model reply
TARGETS = {  # issue 11: gateway/bare p50 ratio per model and pattern
    ("echo", "sequential"): 1.2,
    ("echo", "burst"): 1.5,
    ("openai", "sequential"): 1.5,
    ("openai", "burst"): 2.0,
}
CPU_TARGET = 2.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Result(Latencies):
    cpu: float  # this process's CPU seconds over the pattern
    calls: int  # Bot API calls in the pattern's chats

    def line(self, name: str) -> str:
        return (
            f"  {name:<8} p50 {self.p50 * 1000:7.1f} ms  p95 {self.p95 * 1000:7.1f} ms  "
            f"{self.rate:6.1f} msg/s  {self.calls / self.count:4.2f} calls/msg  "
            f"CPU {self.cpu / self.count * 1000:5.2f} ms/msg"
        )


class Fakes:
    """The fakes' process: its addresses and its round driver."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.telegram_host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        self.info: JSON = json.loads(self._proc.stdout.readline())
        self._client = httpx.AsyncClient(timeout=TIMEOUT)

    async def round(self, count: int, pattern: str, *, words: int) -> Result:
        spec = {"count": count, "pattern": pattern, "gap": 0.0, "words": words}
        cpu = time.process_time()
        resp = await self._client.post(f"{self.info['control']}/round", json=spec)
        cpu = time.process_time() - cpu
        resp.raise_for_status()
        data = resp.json()
        return Result(
            latencies=data["latencies"], elapsed=data["elapsed"], cpu=cpu, calls=data["calls"]
        )

    async def close(self) -> None:
        await self._client.aclose()
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


async def measure(fakes: Fakes, chats: int, big: int, words: int) -> dict[str, Result]:
    await fakes.round(3, "sequential", words=words)  # warm-up: connections, imports
    results = {"sequential": await fakes.round(SEQUENTIAL, "sequential", words=words)}
    bursts = [await fakes.round(chats, "burst", words=words) for _ in range(ROUNDS)]
    results["burst"] = pooled(bursts)
    if big:
        results["big"] = await fakes.round(big, "burst", words=words)
    return results


def bare_handler(llm_url: str | None) -> Any:
    client = httpx.AsyncClient(timeout=60)

    async def reply_of(text: str) -> str:
        return text if llm_url is None else await stream_completion(client, llm_url, text)

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.message is not None and update.message.text is not None:
            await update.message.reply_text(await reply_of(update.message.text))

    return echo


@asynccontextmanager
async def bare_bot(info: JSON, model: str) -> AsyncIterator[None]:
    app: Application[Any, Any, Any, Any, Any, Any] = (
        ApplicationBuilder()
        .token(info["token"])
        .base_url(info["base_url"])
        .base_file_url(info["base_file_url"])
        .build()
    )
    llm = info["llm_url"] if model == "openai" else None
    app.add_handler(MessageHandler(filters.TEXT, bare_handler(llm)))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(timeout=dtm.timedelta(seconds=10))
        await app.start()
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


def provider_section(info: JSON, model: str) -> str:
    if model == "echo":
        return 'kind = "echo"\nword_delay = 0'
    return f'kind = "openai"\nbase_url = "{info["llm_url"]}/v1"\napi_key = "sk-bench"'


@asynccontextmanager
async def gateway_bot(info: JSON, model: str) -> AsyncIterator[None]:
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
{provider_section(info, model)}
[agents.bot]
provider = "main"
model = "m"
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = "{info["base_url"]}"
base_file_url = "{info["base_file_url"]}"
access = "open"
"""
        )
        gateway = Gateway(load_config(path, {"TELEGRAM_BOT_TOKEN": info["token"]}))
        await gateway.start()
        freeze_startup_heap()  # as `serve` does
        try:
            entry = gateway.supervised["telegram"]
            deadline = time.monotonic() + 30
            while entry.state != "connected":
                assert time.monotonic() < deadline, "the gateway did not connect"
                await asyncio.sleep(0.01)
            yield
        finally:
            await gateway.stop()


class PoolTimeouts(logging.Handler):
    """Counts log records that name an exhausted HTTP connection pool."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().lower()
        if "pool" in text and ("timeout" in text or "occupied" in text):
            self.count += 1


def report(model: str, bare: dict[str, Result], gw: dict[str, Result], pool: int) -> None:
    for pattern in gw:
        print(f"{pattern} ({bare[pattern].count} messages):")
        print(bare[pattern].line("bare"))
        print(gw[pattern].line("gateway"))
        ratio = gw[pattern].p50 / bare[pattern].p50
        target = TARGETS.get((model, pattern))
        verdict = (
            ""
            if target is None
            else f" (target <= {target}: {'met' if ratio <= target else 'NOT met'})"
        )
        print(f"  p50 ratio gateway/bare {ratio:.2f}{verdict}")
        cpu = (gw[pattern].cpu / gw[pattern].count) / (bare[pattern].cpu / bare[pattern].count)
        note = f" (target <= {CPU_TARGET}: {'met' if cpu <= CPU_TARGET else 'NOT met'})"
        print(f"  CPU ratio gateway/bare {cpu:.2f}{note if model == 'echo' else ''}")
    if "big" in gw:
        print(f"big burst: all {gw['big'].count} chats answered; pool timeouts logged: {pool}")


async def main(chats: int, big: int, model: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    pool = PoolTimeouts()
    logging.getLogger().addHandler(pool)
    fakes = Fakes()
    words = WORDS if model == "openai" else 0
    try:
        async with bare_bot(fakes.info, model):
            bare = await measure(fakes, chats, big, words)
        async with gateway_bot(fakes.info, model):
            gateway = await measure(fakes, chats, big, words)
    finally:
        await fakes.close()
    print(f"Telegram, model {model}: sequential {SEQUENTIAL}, burst {chats} x {ROUNDS}, big {big}")
    report(model, bare, gateway, pool.count)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--model", choices=["echo", "openai"], default="echo")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    asyncio.run(main(args.chats, args.big, args.model))
