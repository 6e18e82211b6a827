"""Runtime benchmarks (issues 2 and 11). Run: .venv/bin/python -m bench.runtime_bench
(or name phases: ``... runtime_bench overhead chunks``).

1. Overhead: a runtime run against the fake OpenAI-compatible server on loopback vs the
   bare httpx streaming request to the same server with the same reply, interleaved in
   one process; ratio of median wall times over 200 runs (target <= 1.05). Also the TCP
   connections each side opened (a reused connection is one for all runs).
2. Chunk path: the provider's parser alone, per SSE chunk (network chunk -> event).
3. 1,000 runs in flight at once (real HTTP to the fake server): all complete.
4. 10,000 idle tmp conversations, each after one exchange: RSS cost (target < 50 MB).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import time

import httpx

from bench.bare_model import stream_completion
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentRegistry, AgentSpec
from runtime.history import Speaker
from runtime.messages import UserMessage
from runtime.providers.base import ModelProvider
from runtime.providers.echo import EchoProvider
from runtime.providers.openai import OpenAIProvider, _Parser
from runtime.tools import builtin_tools
from tests.fakes.llm_server import FakeLLMServer, Script, Text

WORDS = 60
ROUNDS = 200
WARMUP = 10


def reply_script(delay: float = 0.0) -> Script:
    return Script(steps=[Text(f"word{i} ", delay=delay) for i in range(WORDS)])


def make_runtime(provider: ModelProvider) -> AgentRuntime:
    # No tools and no system prompt: the same request body as the bare call sends.
    spec = AgentSpec(name="bot", provider=provider.name, model="m")
    registry = AgentRegistry([spec], {provider.name: provider}, builtin_tools())
    return AgentRuntime(registry, storage=None)


def message(text: str) -> UserMessage:
    return UserMessage(text=text, speaker=Speaker(name="Bench", id="bench:1"))


async def overhead(server: FakeLLMServer) -> None:
    provider = OpenAIProvider("bench", base_url=f"{server.url}/v1", api_key="sk-bench")
    runtime = make_runtime(provider)
    bare_times: list[float] = []
    run_times: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(ROUNDS + WARMUP):
            server.script(reply_script())
            start = time.perf_counter()
            text = await stream_completion(client, server.url, "hi")
            bare = time.perf_counter() - start
            server.script(reply_script())
            start = time.perf_counter()
            sub = await runtime.submit("bot", f"bench:user:{i}", message("hi"))
            done = await sub.run.wait()
            run = time.perf_counter() - start
            assert done.text == text, (done.text[:40], text[:40])
            # The background title request must not take the next round's script.
            if sub.conversation.title_task is not None:
                await sub.conversation.title_task
            if i == WARMUP - 1:
                connections = server.connections
            if i >= WARMUP:  # warm-up rounds are not counted
                bare_times.append(bare)
                run_times.append(run)
    await runtime.shutdown(grace=1)
    await provider.aclose()
    bare_med, run_med = statistics.median(bare_times), statistics.median(run_times)
    print(f"overhead: {ROUNDS} rounds, {WORDS}-chunk reply")
    print(f"  bare httpx stream   median {bare_med * 1000:.2f} ms")
    print(f"  runtime run         median {run_med * 1000:.2f} ms")
    print(f"  ratio runtime/bare  {run_med / bare_med:.3f}  (target <= 1.05)")
    opened = server.connections - connections
    print(f"  TCP connections opened during the {ROUNDS} rounds (both sides): {opened}")


def chunk_path(count: int = 20_000) -> None:
    chunks = [
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
        b'"model":"m","choices":[{"index":0,"delta":{"content":"word%d "},'
        b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n' % i
        for i in range(count)
    ]
    timings = []
    for _ in range(5):
        parser = _Parser()
        # CPU time: on a shared machine, wall time mostly measures the neighbours.
        start = time.process_time()
        for chunk in chunks:
            parser.feed(chunk)
        timings.append(time.process_time() - start)
    per = min(timings) / count * 1e6
    print(f"chunk path: parser feed, best of 5 x {count} chunks: {per:.2f} us CPU a chunk")


async def in_flight(server: FakeLLMServer, count: int = 1000) -> None:
    provider = OpenAIProvider("bench", base_url=f"{server.url}/v1", api_key="sk-bench")
    runtime = make_runtime(provider)
    for _ in range(count):
        server.script(Script(steps=[Text(f"w{i} ", delay=0.01) for i in range(10)]))
    peak = 0
    start = time.perf_counter()
    subs = [await runtime.submit("bot", f"bench:user:{i}", message("go")) for i in range(count)]
    waiters = [asyncio.ensure_future(s.run.wait()) for s in subs]
    while not all(w.done() for w in waiters):
        peak = max(peak, len(runtime.active_runs()))
        await asyncio.wait(waiters, timeout=0.05)
    elapsed = time.perf_counter() - start
    reasons = {s.run.done.stop_reason for s in subs if s.run.done is not None}
    completed = sum(1 for s in subs if s.run.done is not None and s.run.done.reason == "text")
    await runtime.shutdown(grace=1)
    await provider.aclose()
    print(f"in flight: {count} runs submitted at once, peak {peak} active")
    print(f"  completed with text {completed}/{count} in {elapsed:.2f} s; stop reasons {reasons}")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def idle_memory(count: int = 10_000) -> None:
    provider = EchoProvider("echo", word_delay=0)
    runtime = make_runtime(provider)
    warm = await runtime.submit("bot", "bench:warm", message("warm up"))
    await warm.run.wait()
    gc.collect()
    before = rss_bytes()
    for i in range(count):
        sub = await runtime.submit("bot", f"bench:user:{i}", message(f"hello number {i}"))
        await sub.run.wait()
    # Titles run in the background after each first exchange; let them settle too.
    titles = [c.title_task for c in runtime.router.conversations() if c.title_task]
    await asyncio.gather(*titles)
    gc.collect()
    after = rss_bytes()
    conversations = len(runtime.router.conversations())
    await runtime.shutdown(grace=1)
    per = (after - before) / count
    print(f"idle tmp conversations: {conversations} after one exchange each")
    print(
        f"  RSS growth {(after - before) / 1e6:.1f} MB ({per / 1024:.2f} KiB each; target < 50 MB)"
    )


async def main(phases: set[str]) -> None:
    # Memory first, in a fresh process: measured after the other phases, RSS growth
    # would hide in memory their freed objects left to the allocator.
    if "memory" in phases:
        await idle_memory()
    if "chunks" in phases:
        chunk_path()
    server = FakeLLMServer()
    await server.start()
    try:
        if "overhead" in phases:
            await overhead(server)
        if "inflight" in phases:
            await in_flight(server)
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(set(sys.argv[1:]) or {"memory", "chunks", "overhead", "inflight"}))
