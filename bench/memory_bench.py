"""Memory over months (issue 10.7). Run: .venv/bin/python -m bench.memory_bench

20,000 messages over 5,000 private chats through the real pipeline (SQLite inbox, echo
model, a platform stub that only counts), in four rounds of 5,000. Between rounds the
housekeeping the gateway runs on a timer is run once with "a day" gone by (idle TTLs at
zero), as months of traffic would do. RSS is printed after each round: it must level off,
not grow with every message.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from adapters.base import AdapterState, ChatTarget, InboundMessage, InboundSink, SentMessage
from adapters.text.format import TextFormat, identity
from gateway.pipeline import Pipeline
from gateway.policy import AdapterPolicy
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentRegistry, AgentSpec
from runtime.providers.echo import EchoProvider
from runtime.storage.sqlite import SqliteStorage
from runtime.tools import builtin_tools

CHATS = 5_000
ROUNDS = 4
BATCH = 250


class CountingAdapter:
    """Just enough of a platform: it counts what it is asked to show."""

    name = "mem"
    text_format = TextFormat(limit=4096, markup=identity)

    def __init__(self) -> None:
        self.sent = 0
        self.edits = 0
        self._ids = itertools.count(1)

    @property
    def state(self) -> AdapterState:
        return "connected"

    @property
    def state_detail(self) -> str:
        return ""

    async def stop_intake(self) -> None:
        return None

    async def run(self, sink: InboundSink) -> None:
        await asyncio.Event().wait()

    async def send(self, target: ChatTarget, text: str, *, markup: bool) -> SentMessage:
        self.sent += 1
        return SentMessage(target=target, message_id=str(next(self._ids)))

    async def edit(self, message: SentMessage, text: str, *, markup: bool) -> None:
        self.edits += 1

    async def delete(self, message: SentMessage) -> None:
        return None

    async def typing(self, target: ChatTarget, active: bool) -> None:
        return None

    async def react(self, target: ChatTarget, message_id: str, emoji: str) -> None:
        return None

    async def rename(self, target: ChatTarget, title: str) -> None:
        return None

    def native_stream(self, target: ChatTarget) -> None:
        return None

    def web_routes(self) -> Sequence[web.RouteDef]:
        return []


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def message(n: int) -> InboundMessage:
    chat = n % CHATS
    return InboundMessage(
        platform="mem",
        message_id=f"m{n}",
        text=f"message number {n} for the echo model",
        user_id=str(chat),
        user_name=f"user {chat}",
        scope=f"mem:user:{chat}",
        target=ChatTarget(platform="mem", chat_id=str(chat)),
        is_direct=True,
        addressed=True,
    )


async def _send_batch(pipeline: Pipeline, runtime: AgentRuntime, *, first: int) -> None:
    """Messages ``first`` .. ``first + BATCH - 1``, each to its own chat, all answered."""
    await asyncio.gather(*(pipeline.handle(message(first + i)) for i in range(BATCH)))
    await pipeline.lanes.join(60)
    while runtime.active_runs() or pipeline.renderers:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        storage = SqliteStorage(Path(tmp) / "bench.db")
        await storage.open()
        provider = EchoProvider("echo", word_delay=0.0)
        spec = AgentSpec(name="bot", provider="echo", model="echo")
        runtime = AgentRuntime(AgentRegistry([spec], {"echo": provider}, builtin_tools()), storage)
        adapter = CountingAdapter()
        pipeline = Pipeline(
            runtime,
            {"mem": adapter},
            {"mem": AdapterPolicy(name="mem", access="open", edit_interval=0.0)},
            default_agent="bot",
        )
        print(f"start: RSS {rss_mib():.1f} MiB")
        n = 0
        baseline = 0.0
        for _ in range(ROUNDS):
            started = time.monotonic()
            for _batch in range(CHATS // BATCH):
                await _send_batch(pipeline, runtime, first=n)
                n += BATCH
            # a day passes: the timer's housekeeping forgets what went idle
            runtime.tmp_idle_ttl = runtime.topic_idle_ttl = 0.0
            pipeline.upkeep.housekeeping()
            await pipeline.ledger.prune(0.0)
            gc.collect()
            rss = rss_mib()
            baseline = baseline or rss
            per_message = (rss - baseline) * 1024 / max(1, n - CHATS)
            print(
                f"after {n:>6,} messages: RSS {rss:7.1f} MiB, "
                f"{len(runtime.router.conversations()):>5} conversations in memory, "
                f"{adapter.sent:>6,} replies, {time.monotonic() - started:5.1f} s, "
                f"{per_message:+.3f} KiB/message since the first round"
            )
        await runtime.shutdown(1.0)
        await pipeline.drain(1.0)
        await storage.close()


if __name__ == "__main__":
    asyncio.run(main())
