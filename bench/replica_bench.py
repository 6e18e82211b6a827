"""Replica benchmark (issue 12): one gateway on SQLite, one on PostgreSQL, two on PostgreSQL.

Run: .venv/bin/python -m bench.replica_bench [--chats 100] [--messages 400] [--concurrency 32]
     [--rounds 3] [--no-fsync]

Everything on loopback and bounded: a PostgreSQL server from Debian's package
(``tests.postgres_server``, a fresh database per setup), the fake Telegram Bot API in this
process and real ``agent-gateway run`` processes with Telegram in webhook mode and the echo
provider (``word_delay = 0``), so what is measured is the gateway and its storage, not a
model. The three setups run in turn, ``--rounds`` times (each time on fresh storage, the
figures pooled), so a burst of other work on the machine lands on all of them. Each
setup is started, warmed up, then measured in two patterns:

- ``serial``: one message at a time, each in a new chat: the latency of one message with
  nothing else going on (the PostgreSQL-vs-SQLite added latency is read here);
- ``load``: ``--messages`` messages over ``--chats`` chats, at most ``--concurrency`` in
  flight; a chat's next message waits for the reply to its previous one (else it would be
  steered into the running turn and get no reply of its own).

Webhooks go round-robin over the setup's replicas, message by message, as a load balancer
without stickiness would send them: a message reaching the replica that does not own its
conversation is handed over to the owner (``gateway/handoff.py``). A message's latency runs
from just before its webhook POST to the fake seeing the bot's sendMessage for that chat
(with ``word_delay = 0`` the reply goes out once, final). CPU per message is read from
/proc for the gateway processes and the PostgreSQL server, and from this process for the
fake and the driver: they all share the machine's cores, which is why two replicas on a
small machine need not beat one. PostgreSQL runs with its default durability (fsync and
synchronous commit on) unless ``--no-fsync`` keeps the test server's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.replica_procs import Cpu, database
from bench.stats import Latencies, pooled
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_api import JSON, SECRET_HEADER, FakeTelegram
from tests.gateway_procs import ENV_NAMES, START_TIMEOUT, Gateways
from tests.postgres_server import PostgresServer

SECRET = "replica-bench-secret"
REPLY_TIMEOUT = 60.0
WARMUP = 10
SERIAL = 40
SETUPS = ("1 x SQLite", "1 x PostgreSQL", "2 x PostgreSQL")
CONFIG = """
default_agent = "bot"
shutdown_grace = 2.0
[server]
host = "127.0.0.1"
port = 0
[storage]
{storage}
[providers.echo]
kind = "echo"
word_delay = 0
[agents.bot]
provider = "echo"
tools = []
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = "{tg}"
base_file_url = "{tg_files}"
mode = "webhook"
webhook_secret = "{secret}"
access = "open"
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Result(Latencies):
    cpu: float  # the gateway processes' CPU seconds over the pattern
    db_cpu: float  # the PostgreSQL server's
    own_cpu: float  # this process's: the fake Bot API and the driver

    def line(self, name: str) -> str:
        return (
            f"  {name:<30} p50 {self.p50 * 1000:7.1f} ms  p95 {self.p95 * 1000:7.1f} ms  "
            f"{self.rate:6.1f} msg/s  CPU ms/msg: gateways {self.cpu / self.count * 1000:5.2f}"
            f" PostgreSQL {self.db_cpu / self.count * 1000:5.2f}"
            f" fake+driver {self.own_cpu / self.count * 1000:5.2f}"
        )


class Replies:
    """Stamps the moment the fake records each chat's n-th successful sendMessage.

    One watcher reads the fake's call log incrementally and resolves the future of the
    (chat, n) a sender waits on, so hundreds of waiters cost one scan per change.
    """

    def __init__(self, telegram: FakeTelegram) -> None:
        self._telegram = telegram
        self._index = 0
        self.counts: Counter[int] = Counter()
        self._waiting: dict[tuple[int, int], asyncio.Future[float]] = {}

    def expect(self, chat: int) -> asyncio.Future[float]:
        """The time of the chat's next reply (the one after those seen so far)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[(chat, self.counts[chat] + 1)] = future
        return future

    def _scan(self) -> bool:
        calls = self._telegram.calls()
        now = time.perf_counter()
        for call in calls[self._index :]:
            if call.method == "sendMessage" and call.status == 200:
                chat = int(call.params["chat_id"])
                self.counts[chat] += 1
                future = self._waiting.pop((chat, self.counts[chat]), None)
                if future is not None and not future.done():
                    future.set_result(now)
        self._index = len(calls)
        return False  # never done: the watcher runs until cancelled

    async def watch(self) -> None:
        await self._telegram.wait_for(self._scan, timeout=24 * 3600)


class Driver:
    """Sends users' messages to the replicas' webhooks and times the replies."""

    def __init__(self, telegram: FakeTelegram, urls: list[str]) -> None:
        self.telegram = telegram
        self.replies = Replies(telegram)
        self._urls = itertools.cycle(f"{url}/telegram/webhook" for url in urls)
        self._update_ids = itertools.count(1)
        self._session = aiohttp.ClientSession()
        self._watcher = asyncio.create_task(self.replies.watch())

    async def close(self) -> None:
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher
        await self._session.close()

    def chats(self, count: int) -> list[tuple[int, JSON]]:
        users = [self.telegram.make_user(f"User {i}") for i in range(count)]
        return [(self.telegram.private_chat(user), user) for user in users]

    async def one(self, chat: int, user: JSON, text: str) -> float:
        """Post one message to the next replica; its latency to the bot's reply."""
        message = self.telegram.user_sends(chat, user, text)
        update = {"update_id": next(self._update_ids), "message": message}
        reply = self.replies.expect(chat)
        started = time.perf_counter()
        async with self._session.post(
            next(self._urls), json=update, headers={SECRET_HEADER: SECRET}
        ) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"the webhook answered {response.status}")
        return await asyncio.wait_for(reply, REPLY_TIMEOUT) - started

    async def serial(self, count: int) -> list[float]:
        return [await self.one(chat, user, "hello") for chat, user in self.chats(count)]

    async def load(self, chats: int, messages: int, concurrency: int) -> list[float]:
        slots = asyncio.Semaphore(concurrency)
        per_chat = [messages // chats + (i < messages % chats) for i in range(chats)]

        async def converse(chat: int, user: JSON, turns: int) -> list[float]:
            latencies = []
            for turn in range(turns):
                async with slots:
                    latencies.append(await self.one(chat, user, f"message {turn}"))
            return latencies

        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(converse(chat, user, turns))
                for (chat, user), turns in zip(self.chats(chats), per_chat, strict=True)
            ]
        return [x for task in tasks for x in task.result()]


async def timed(cpu: Cpu, pattern: Awaitable[list[float]]) -> Result:
    before = await asyncio.to_thread(cpu.sample)
    own = time.process_time()
    started = time.perf_counter()
    latencies = await pattern
    elapsed = time.perf_counter() - started
    own = time.process_time() - own
    gateway, postgres = await asyncio.to_thread(cpu.spent, before)
    return Result(latencies=latencies, elapsed=elapsed, cpu=gateway, db_cpu=postgres, own_cpu=own)


async def ready(gateways: Gateways, n: int) -> str:
    """The n-th gateway's address once /readyz says 200 (its Telegram adapter is up)."""
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            url = gateways.url(n)
            if url is not None:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return url
            await asyncio.sleep(0.05)  # polling a child process's start, bounded above
    raise RuntimeError(f"gateway {n} was not ready in {START_TIMEOUT} s\n{gateways.logs()}")


async def stop(gateways: Gateways) -> None:
    for proc in gateways.procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in gateways.procs:
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def write_config(folder: Path, telegram: FakeTelegram, storage: str) -> Path:
    folder.mkdir(parents=True)
    config = folder / "gateway.toml"
    config.write_text(
        CONFIG.format(
            storage=storage, tg=telegram.base_url, tg_files=telegram.base_file_url, secret=SECRET
        ),
        encoding="utf-8",
    )
    return config


@asynccontextmanager
async def started(
    folder: Path, telegram: FakeTelegram, storage: str, count: int
) -> AsyncIterator[tuple[Gateways, list[str]]]:
    """``count`` gateway processes on one storage, each ready for webhooks."""
    config = await asyncio.to_thread(write_config, folder, telegram, storage)
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["TELEGRAM_BOT_TOKEN"] = telegram.token
    # The echo provider never calls the model server: it is here for the helper's logs.
    gateways = Gateways(
        directory=folder, config=config, env=env, telegram=telegram, llm=FakeLLMServer()
    )
    try:
        for _ in range(count):
            await gateways.start()
        urls = [await ready(gateways, n) for n in range(1, count + 1)]
        yield gateways, urls
    finally:
        await stop(gateways)


async def measure(
    folder: Path, storage: str, count: int, args: argparse.Namespace, postgres_port: int | None
) -> dict[str, Result]:
    async with FakeTelegram() as telegram, started(folder, telegram, storage, count) as procs:
        gateways, urls = procs
        cpu = Cpu(gateways=gateways, postgres_port=postgres_port)
        driver = Driver(telegram, urls)
        try:
            await driver.serial(WARMUP)  # cold paths: imports, pools, prepared statements
            serial = await timed(cpu, driver.serial(SERIAL))
            load = await timed(cpu, driver.load(args.chats, args.messages, args.concurrency))
        finally:
            await driver.close()
        sent = WARMUP + SERIAL + args.messages
        answered = sum(driver.replies.counts.values())
        if answered != sent:
            print(f"  ! {answered} replies to {sent} messages\n{gateways.logs()[-3000:]}")
    return {"serial": serial, "load": load}


async def one_round(
    server: PostgresServer, folder: Path, args: argparse.Namespace
) -> dict[str, dict[str, Result]]:
    """Each setup once, each on fresh storage, in the order SQLite, one, two replicas."""
    results = {
        SETUPS[0]: await measure(
            folder / "sqlite", f'path = "{folder / "gateway.db"}"', 1, args, None
        )
    }
    print_setup(SETUPS[0], results[SETUPS[0]])
    for count in (1, 2):
        label = SETUPS[count]
        async with database(server, f"bench_{folder.name}_{count}") as url:
            results[label] = await measure(
                folder / f"pg{count}", f'url = "{url}"', count, args, server.port
            )
        print_setup(label, results[label])
    return results


async def run(args: argparse.Namespace) -> dict[str, dict[str, Result]]:
    """Rounds of the three setups: noise from other work on the machine hits all three."""
    server = PostgresServer(durable=not args.no_fsync)
    await asyncio.to_thread(server.start)
    rounds: list[dict[str, dict[str, Result]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="replica-bench-") as name:
            for n in range(1, args.rounds + 1):
                print(f"round {n}:")
                rounds.append(await one_round(server, Path(name) / f"r{n}", args))
    finally:
        await asyncio.to_thread(server.stop)
    return {
        label: {p: pooled([r[label][p] for r in rounds]) for p in ("serial", "load")}
        for label in SETUPS
    }


def print_setup(label: str, result: dict[str, Result]) -> None:
    for pattern, figures in result.items():
        print(figures.line(f"{label}, {pattern} ({figures.count})"))


def report(results: dict[str, dict[str, Result]]) -> None:
    print("All rounds pooled:")
    for label in SETUPS:
        print_setup(label, results[label])
    sqlite, one, two = (results[label] for label in SETUPS)
    print("Two replicas vs one (PostgreSQL, load):")
    print(
        f"  throughput x{two['load'].rate / one['load'].rate:.2f}"
        f"  p50 x{two['load'].p50 / one['load'].p50:.2f}"
        f"  p95 x{two['load'].p95 / one['load'].p95:.2f}"
        f"  (vs one on SQLite: throughput x{two['load'].rate / sqlite['load'].rate:.2f})"
    )
    print("PostgreSQL vs SQLite, one gateway (added latency):")
    for pattern in ("serial", "load"):
        pg, lite = one[pattern], sqlite[pattern]
        print(
            f"  {pattern:<6} p50 {(pg.p50 - lite.p50) * 1000:+7.1f} ms"
            f"  p95 {(pg.p95 - lite.p95) * 1000:+7.1f} ms"
            f"  throughput x{pg.rate / lite.rate:.2f}"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"(this machine: {os.cpu_count()} CPUs shared by the driver, the fake, the gateways,"
        f" PostgreSQL and anything else running; load average now {load})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="keep the test server's fsync=off, synchronous_commit=off",
    )
    args = parser.parse_args()
    print(f"PostgreSQL durability: {'off (test settings)' if args.no_fsync else 'on'}")
    report(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
