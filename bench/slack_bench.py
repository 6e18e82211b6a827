"""Slack benchmark (issue 6). Run: .venv/bin/python -m bench.slack_bench [--threads 50]

One gateway (the Slack adapter in Socket Mode or HTTP mode, the offline echo model with
a small ``word_delay``) against the fake Slack. N users (default 50) each open an
assistant thread (greeting and suggested prompts are posted), then all N send one
message at once. Measured per reply: the time from the event leaving the fake to the
first visible text in that thread (``chat.startStream``, or ``chat.postMessage`` without
streams), the Web API calls the gateway made for it (typing status, stream or post and
edits, the generated title), and the 429s seen. ``--inject-429 K`` makes the fake answer
the first K ``chat.appendStream`` calls with 429 (Retry-After 1) to show they are
absorbed; ``--no-streams`` turns the fake's chat streams off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.first_token import FirstTokens, summary
from bench.stats import p95
from gateway.app import Gateway, freeze_startup_heap
from gateway.config_loader import load_config
from tests.fakes.slack_api import ApiCall, FakeSlack

TIMEOUT = 120.0
SECRET = "bench-signing-secret"
CONFIG = """
default_agent = "assistant"
shutdown_grace = 1.0

[server]
host = "127.0.0.1"
port = 0

[storage]
path = {db}

[providers.echo]
kind = "echo"
word_delay = {word_delay}

[agents.assistant]
provider = "echo"

[adapters.slack]
bot_token = {bot_token}
app_token = {app_token}
signing_secret = {secret}
api_url = {api_url}
mode = {mode}
edit_interval = {edit_interval}
suggested_prompts = [{{ title = "Plan", message = "Plan my week" }}]
"""


def write_config(folder: Path, fake: FakeSlack, args: argparse.Namespace) -> Path:
    values: dict[str, Any] = {
        "db": str(folder / "bench.db"),
        "bot_token": fake.bot_token,
        "app_token": fake.app_token,
        "secret": SECRET,
        "api_url": fake.api_url,
        "mode": args.mode,
    }
    text = CONFIG.format(
        word_delay=args.word_delay,
        edit_interval=args.edit_interval,
        **{key: json.dumps(value) for key, value in values.items()},
    )
    path = folder / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Bench:
    def __init__(self, fake: FakeSlack, gateway: Gateway, mode: str) -> None:
        self.fake = fake
        self.gateway = gateway
        self.mode = mode
        self.tokens = FirstTokens(gateway)

    async def deliver(self, event: dict[str, Any]) -> None:
        if self.mode == "socket":
            await self.fake.send_event(event, timeout=TIMEOUT)
            return
        assert self.gateway.server is not None
        url = f"{self.gateway.server.url}/slack/events"
        status, _ = await self.fake.deliver_http(url, event, signing_secret=SECRET)
        assert status == 200, status

    async def open_threads(self, count: int) -> list[tuple[str, str, str]]:
        """(channel, user, thread_ts) per user, greeted and prompted."""
        threads = []
        for i in range(count):
            channel, user = f"D{i:09d}", f"U{i:09d}"
            started = self.fake.assistant_thread_started_event(channel, user)
            threads.append((channel, user, started["assistant_thread"]["thread_ts"]))
            await self.deliver(started)
        await self.fake.wait_for(
            lambda: all(self.fake.thread(c, t).suggested_prompts for c, _, t in threads),
            TIMEOUT,
        )
        return threads

    def finished(self, channel: str, thread_ts: str, text: str) -> bool:
        return any(
            m.text == text and not m.streaming for m in self.fake.bot_messages(channel, thread_ts)
        )

    async def idle(self) -> None:
        runtime, pipeline = self.gateway.runtime, self.gateway.pipeline
        assert runtime is not None
        assert pipeline is not None
        await until(lambda: not runtime.active_runs() and not pipeline.renderers)


async def until(predicate: Callable[[], bool]) -> None:
    """For the gateway's own state, which the fake cannot signal: re-check until true."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def first_text_at(fake: FakeSlack, channel: str, thread_ts: str, after: float) -> float | None:
    for call in fake.calls:
        if (
            call.method in ("chat.startStream", "chat.postMessage")
            and call.ok
            and call.args.get("channel") == channel
            and call.args.get("thread_ts") == thread_ts
            and call.at >= after
        ):
            return call.at
    return None


async def run(args: argparse.Namespace) -> None:
    fake = FakeSlack()
    fake.supports_streaming = not args.no_streams
    await fake.start()
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(write_config(Path(folder), fake, args), env={})
        gateway = Gateway(config)
        await gateway.start()
        freeze_startup_heap()  # as `serve` does
        try:
            await measure(Bench(fake, gateway, args.mode), args)
        finally:
            await gateway.stop()
            await fake.stop()


async def measure(bench: Bench, args: argparse.Namespace) -> None:
    fake, gateway = bench.fake, bench.gateway
    await until(lambda: gateway.readiness()[1]["adapters"]["slack"]["state"] == "connected")
    threads = await bench.open_threads(args.threads)
    opening_calls = len(fake.calls)
    if args.inject_429:
        fake.fail_next("chat.appendStream", retry_after=1, times=args.inject_429)
    words = " ".join(f"word{i}" for i in range(args.words))
    texts = {t: f"question {i} {words}" for i, (_, _, t) in enumerate(threads)}
    sent_at: dict[str, float] = {}

    async def ask(channel: str, user: str, thread_ts: str) -> None:
        event = fake.message_event(channel, user, texts[thread_ts], thread_ts=thread_ts)
        sent_at[thread_ts] = time.monotonic()
        await bench.deliver(event)

    began = time.monotonic()
    await asyncio.gather(*(ask(c, u, t) for c, u, t in threads))
    await fake.wait_for(lambda: all(bench.finished(c, t, texts[t]) for c, _, t in threads), TIMEOUT)
    elapsed = time.monotonic() - began
    await bench.idle()
    await fake.wait_for(lambda: all(fake.thread(c, t).title for c, _, t in threads), TIMEOUT)
    report(bench, threads, sent_at, opening_calls, elapsed, args)


def last_text_at(fake: FakeSlack, channel: str, after: float) -> float:
    """When the reply was complete: the last message call in its channel (a stream's
    stop); each bench thread has a channel of its own."""
    return max(
        call.at
        for call in fake.calls
        if call.method.startswith("chat.")
        and call.args.get("channel") == channel
        and call.at >= after
    )


def _token_gaps(
    bench: Bench, threads: list[tuple[str, str, str]], sent_at: dict[str, float]
) -> list[float]:
    """Seconds from the model's first token to the first text visible in the thread."""
    gaps = []
    for channel, _, thread_ts in threads:
        at = first_text_at(bench.fake, channel, thread_ts, sent_at[thread_ts])
        assert at is not None
        gaps.append(at - bench.tokens.at[(channel, thread_ts)])
    return gaps


def _latencies(
    fake: FakeSlack, threads: list[tuple[str, str, str]], sent_at: dict[str, float]
) -> list[float]:
    """Seconds from each thread's event to the first text visible in it."""
    latencies = []
    for channel, _, thread_ts in threads:
        at = first_text_at(fake, channel, thread_ts, sent_at[thread_ts])
        assert at is not None, f"no visible text in {channel}:{thread_ts}"
        latencies.append(at - sent_at[thread_ts])
    return latencies


def _print_by_method(calls: list[ApiCall], n: int) -> None:
    """One line per Web API method: how many calls it took per thread."""
    for method, count in sorted(Counter(call.method for call in calls).items()):
        print(f"    {method:32s} {count / n:.2f}")


def report(
    bench: Bench,
    threads: list[tuple[str, str, str]],
    sent_at: dict[str, float],
    opening_calls: int,
    elapsed: float,
    args: argparse.Namespace,
) -> None:
    fake = bench.fake
    latencies = _latencies(fake, threads, sent_at)
    reply_calls = fake.calls[opening_calls:]
    limited = sum(1 for call in fake.calls if call.status == 429)
    n = len(threads)
    streams = "on" if fake.supports_streaming else "off"
    print(
        f"Slack bench: {n} assistant threads at once, mode {args.mode}, streams {streams}, "
        f"echo word_delay {args.word_delay}s, {args.words + 2} words per reply, "
        f"edit_interval {args.edit_interval}s"
    )
    print(f"  replies delivered:           {n}/{n} in {elapsed:.2f}s")
    print(
        f"  event -> first visible text: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p95 {p95(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    print(f"  {summary(_token_gaps(bench, threads, sent_at))}")
    done = [last_text_at(fake, c, sent_at[t]) - sent_at[t] for c, _, t in threads]
    print(
        f"  event -> reply complete:     median {statistics.median(done) * 1000:.1f} ms, "
        f"p95 {p95(done) * 1000:.1f} ms"
    )
    print(f"  Web API calls per reply:     {len(reply_calls) / n:.2f}")
    _print_by_method(reply_calls, n)
    print(f"  opening a thread:            {opening_calls / n:.2f} calls")
    _print_by_method(fake.calls[:opening_calls], n)
    print(
        f"  429s: {limited} answered by the fake, "
        f"{bench.gateway.metrics.rate_limited.value('slack'):g} reached the gateway's budget"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--words", type=int, default=30, help="words per question")
    parser.add_argument("--word-delay", type=float, default=0.01)
    parser.add_argument("--edit-interval", type=float, default=1.0)
    parser.add_argument("--mode", choices=("socket", "http"), default="socket")
    parser.add_argument("--no-streams", action="store_true")
    parser.add_argument("--inject-429", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
