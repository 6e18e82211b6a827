"""Delivery benchmark (issue 3). Run: .venv/bin/python -m bench.delivery_bench [seconds]

A 10,000-character reply streamed at 50 tokens/s (about 4 characters a token) through
the gateway's renderer to an in-memory platform with Telegram's 4096-character limit
and a 1-second edit interval. Prints: edits made, the most edits in any one-second
window in the chat (target <= 1), characters on screen vs characters of the reply
(must match), and the renderer's CPU time per reply (CPU of a run with the renderer
minus the same run without it). Also prints what the text layer costs per edit: the
whole 10,000-character reply split for Telegram (each chunk rendered to HTML and
measured in UTF-16 code units), and the same for 2,100 emoji outside the BMP.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from collections.abc import AsyncIterator

from adapters.telegram.adapter import TelegramAdapter
from adapters.text.chunking import split_message
from adapters.text.telegram_html import utf16_len
from gateway.delivery import DeliveryOptions
from gateway.pipeline import Pipeline
from gateway.policy import AdapterPolicy
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentRegistry, AgentSpec
from runtime.providers.base import ModelRequest, ProviderEvent, TextChunk, UsageReport
from runtime.tools import ToolRegistry
from tests.fakes.memory_adapter import MemoryAdapter
from tests.pipeline_helpers import dm
from tests.runtime_helpers import wait_for

REPLY_CHARS = 10_000
TOKENS_PER_SECOND = 50


def make_reply(seed: int = 7) -> list[str]:
    """Tokens of a markdown-ish reply: paragraphs of words, a code block in the middle."""
    rnd = random.Random(seed)
    words = [
        "the",
        "gateway",
        "streams",
        "replies",
        "into",
        "chats",
        "while",
        "agents",
        "think",
        "and",
        "tools",
        "run",
    ]
    text = ""
    while len(text) < REPLY_CHARS:
        if len(text) > REPLY_CHARS // 2 and "```" not in text:
            text += "```python\n" + "print('hello')\n" * 20 + "```\n\n"
        sentence = " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 20)))
        text += sentence.capitalize() + ". "
        if rnd.random() < 0.25:
            text += "\n\n"
    text = text[:REPLY_CHARS]
    return [text[i : i + 4] for i in range(0, len(text), 4)]


class PacedProvider:
    name = "paced"

    def __init__(self, tokens: list[str], rate: float) -> None:
        self.tokens = tokens
        self.interval = 1.0 / rate

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        if len(request.messages) == 1 and "title" in getattr(request.messages[0], "text", ""):
            yield TextChunk(text="Benchmark Title")  # the background title request
            return
        start = time.monotonic()
        for i, token in enumerate(self.tokens):
            delay = start + i * self.interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield TextChunk(text=token)
        yield UsageReport(prompt_tokens=10, completion_tokens=len(self.tokens))

    async def aclose(self) -> None:
        pass


async def one_reply(rate: float, *, render: bool) -> tuple[MemoryAdapter, float, str]:
    tokens = make_reply()
    provider = PacedProvider(tokens, rate)
    spec = AgentSpec(name="bot", provider="paced", model="m")
    runtime = AgentRuntime(AgentRegistry([spec], {"paced": provider}, ToolRegistry()))
    runtime.add_title_listener(lambda conv, event: None)
    adapter = MemoryAdapter(limit=4096, markup="plain")
    pipeline = Pipeline(
        runtime,
        {"mem": adapter},
        {"mem": AdapterPolicy(name="mem", edit_interval=1.0)},
        default_agent="bot",
        delivery=DeliveryOptions(),
    )
    if not render:
        runtime._run_listeners.clear()  # the same run with nobody rendering it
    task = asyncio.create_task(adapter.run(pipeline))
    await adapter.connected()
    cpu = time.process_time()
    await adapter.deliver(dm("go"))
    await wait_for(lambda: bool(runtime.active_runs()))  # the chat's lane starts it
    [run] = runtime.active_runs()
    await run.wait()
    await pipeline.drain(grace=30)
    await runtime.shutdown(grace=5)
    cpu = time.process_time() - cpu
    adapter.stop()
    await task
    return adapter, cpu, "".join(tokens)


def visible(text: str) -> str:
    """Non-space characters outside fence lines (the chunker closes and reopens a code
    fence around a split; those lines are markup, not text)."""
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("```")]
    return "".join("".join(lines).split())


def max_in_window(times: list[float], window: float = 1.0) -> int:
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in itertools.islice(times, i, None) if t - start < window))
    return best


def text_layer_cost(text: str, repeat: int = 20) -> tuple[float, list[str]]:
    """Milliseconds to split ``text`` for Telegram and render every chunk, as one
    flush of the renderer does, and the rendered chunks."""
    fmt = TelegramAdapter.text_format
    start = time.perf_counter()
    for _ in range(repeat):
        chunks = split_message(text, fmt.limit, lambda md: fmt.measure(fmt.render(md)))
        rendered = [fmt.render(chunk) for chunk in chunks]
    return (time.perf_counter() - start) * 1000 / repeat, rendered


def print_text_layer() -> None:
    for label, text in (
        ("10,000-char reply", "".join(make_reply())),
        ("2,100 emoji", "\U0001f600" * 2100),
    ):
        ms, rendered = text_layer_cost(text)
        longest = max(TelegramAdapter.text_format.measure(r) for r in rendered)
        print(
            f"telegram split+render of the {label}: {ms:.1f} ms per flush, "
            f"{len(rendered)} messages, longest {longest} UTF-16 units (limit 4096), "
            f"source {utf16_len(text)} units"
        )


async def main(rate: float) -> None:
    print_text_layer()
    seconds = REPLY_CHARS / 4 / rate
    print(f"streaming {REPLY_CHARS} characters at {rate:g} tokens/s (~{seconds:.0f} s each run)")
    adapter, cpu_with, reply = await one_reply(rate, render=True)
    _, cpu_without, _ = await one_reply(rate, render=False)
    on_screen = adapter.chat("dm42")
    edit_times = [t for t, _, _ in adapter.edits]
    send_times = [h[0][0] for h in (m.history for m in adapter.messages.values())]
    shown = visible("\n".join(on_screen))
    sent = visible(reply)
    print(f"messages: {len(on_screen)} (limit 4096), edits: {len(adapter.edits)}")
    print(f"max edits in any 1 s window: {max_in_window(edit_times)} (target <= 1)")
    print(f"max sends+edits in any 1 s window: {max_in_window(sorted(edit_times + send_times))}")
    print(
        f"characters on screen {len(shown)} vs in the reply {len(sent)} "
        f"(non-space): {'match' if shown == sent else 'MISMATCH'}"
    )
    print(f"renderer CPU per reply: {(cpu_with - cpu_without) * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else TOKENS_PER_SECOND))
