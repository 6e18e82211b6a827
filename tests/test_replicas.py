"""Two gateway replicas on one PostgreSQL database (issue 12).

Two real `agent-gateway run` processes share a PostgreSQL database started by the tests;
Telegram runs in webhook mode, so an update may reach either replica (the test posts each
one to the replica it chooses, as a load balancer would). The messages of one chat go
alternately to both: one run at a time (the second message steers into the running
turn on the owning replica), FIFO, each answered once. Then the owner is SIGKILLed in the
middle of a reply, and the other replica takes the conversation over and answers.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLMServer, Script, Text
from tests.fakes.telegram_api import JSON, FakeTelegram
from tests.gateway_procs import (
    STEP_TIMEOUT,
    Gateways,
    child_env,
    run_requests,
    until,
    user_texts,
    waited,
)

pytestmark = pytest.mark.postgres

SECRET = "replica-test-secret"
TAKEOVER_TIMEOUT = 30.0  # a lease lasts 10 s; a sweep runs every few seconds
CONFIG = """
default_agent = "bot"
shutdown_grace = 1.0
[server]
host = "127.0.0.1"
port = 0
[storage]
url = "{url}"
[providers.llm]
kind = "openai"
base_url = "{llm}/v1"
api_key = "${{OPENAI_API_KEY}}"
max_retries = 0
[agents.bot]
provider = "llm"
model = "fake-model"
tools = []
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = "{tg}"
base_file_url = "{tg_files}"
{mode}
access = "open"
edit_interval = 0.1
"""


WEBHOOK = f'mode = "webhook"\nwebhook_secret = "{SECRET}"'
POLLING = 'mode = "polling"'


@pytest.fixture
def mode() -> str:
    return WEBHOOK


@pytest.fixture
async def replicas(
    tmp_path: Path,
    telegram: FakeTelegram,
    llm_server: FakeLLMServer,
    postgres_url: str,
    mode: str,
) -> AsyncIterator[Gateways]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG.format(
            url=postgres_url,
            llm=llm_server.url,
            tg=telegram.base_url,
            tg_files=telegram.base_file_url,
            mode=mode,
        ),
        encoding="utf-8",
    )
    env = child_env(TELEGRAM_BOT_TOKEN=telegram.token, OPENAI_API_KEY="sk-fake")
    running = Gateways(
        directory=tmp_path, config=config, env=env, telegram=telegram, llm=llm_server
    )
    async with running.replicas(2):
        yield running


async def post(gateways: Gateways, n: int, chat: int, user: JSON, text: str) -> int:
    """The user's message, delivered by Telegram's webhook to replica ``n``."""
    telegram = gateways.telegram
    message = telegram.user_sends(chat, user, text)
    update = {"update_id": 10_000 + message["message_id"], "message": message}
    status = await telegram.deliver_webhook(
        f"{gateways.url(n)}/telegram/webhook", update, secret_token=SECRET
    )
    assert status == 200, gateways.logs()
    return int(message["message_id"])


def answered(gateways: Gateways, chat: int) -> list[str]:
    return [m.text for m in gateways.telegram.sent_messages(chat)]


async def test_one_conversation_across_two_replicas_runs_once_in_order(
    replicas: Gateways, telegram: FakeTelegram, llm_server: FakeLLMServer
) -> None:
    alice = telegram.make_user("Alice", username="alice_r")
    chat = telegram.private_chat(alice)
    held = asyncio.Event()
    llm_server.script(Script(steps=[Text("first part")], gate=held))

    await post(replicas, 1, chat, alice, "one")
    await waited("the first run", replicas, llm_server.wait_for_requests(1, STEP_TIMEOUT), 40)
    steered = await post(replicas, 2, chat, alice, "two")  # the other replica took it
    # The owner steered it into the running turn: the eyes reaction, and no second run.
    await until(
        "the steering acknowledgement",
        replicas,
        lambda: any(
            str(c.params.get("message_id")) == str(steered)
            for c in telegram.calls("setMessageReaction")
        ),
        STEP_TIMEOUT,
    )
    assert len(llm_server.requests) == 1
    held.set()
    # Each next message waits for the answer to the one before, by its text: a count of
    # sent messages would also grow with the late answer to an earlier one.
    for n, text in ((0, "two"), (2, "three"), (1, "four"), (2, "five")):
        if n:
            await post(replicas, n, chat, alice, text)
        await until(
            f"the answer to {text}",
            replicas,
            lambda: f"echo: [Alice] {text}" in answered(replicas, chat),  # noqa: B023
            STEP_TIMEOUT,
        )

    # One run at a time, FIFO: each model call ends with the next message. The steered
    # one was queued behind the running turn (its text-only answer ended the run), so
    # the run it started saw both, and each message was answered exactly once.
    calls = [r for r in llm_server.requests if "Summarize" not in str(r.json)]
    assert [user_texts(c)[-1] for c in calls] == [
        f"[Alice] {t}" for t in ("one", "two", "three", "four", "five")
    ], replicas.logs()
    assert user_texts(calls[1])[-2:] == ["[Alice] one", "[Alice] two"]
    assert answered(replicas, chat) == [
        "first part",
        *(f"echo: [Alice] {t}" for t in ("two", "three", "four", "five")),
    ]


async def test_a_killed_owner_is_taken_over_by_the_other_replica(
    replicas: Gateways, telegram: FakeTelegram, llm_server: FakeLLMServer
) -> None:
    bob = telegram.make_user("Bob", username="bob_r")
    chat = telegram.private_chat(bob)
    held = asyncio.Event()  # never set: the owner dies mid-reply
    llm_server.script(Script(steps=[Text("Thinking")], gate=held))
    await post(replicas, 1, chat, bob, "are you there?")
    await waited("the owner's run", replicas, llm_server.wait_for_requests(1, STEP_TIMEOUT), 40)
    owner = replicas.procs[0]
    owner.kill()
    assert await waited("the owner's exit", replicas, owner.wait(), 10) == -signal.SIGKILL
    started = time.monotonic()
    await until(
        "the other replica's answer",
        replicas,
        lambda: answered(replicas, chat),
        TAKEOVER_TIMEOUT,
    )
    took = time.monotonic() - started
    assert len(run_requests(llm_server, "are you there?")) == 2  # killed, then redone
    # A later message goes to the survivor's lane and is answered once too.
    await post(replicas, 2, chat, bob, "thanks")
    await until(
        "the answer to a later message",
        replicas,
        lambda: len(answered(replicas, chat)) >= 2,
        STEP_TIMEOUT,
    )
    survivor = replicas.procs[1]
    survivor.send_signal(signal.SIGTERM)
    assert await waited("the survivor to stop", replicas, survivor.wait(), 10) == 0
    assert len(answered(replicas, chat)) == 2, (answered(replicas, chat), replicas.logs())
    assert took < TAKEOVER_TIMEOUT


@pytest.mark.parametrize("mode", [POLLING])
async def test_polling_runs_on_one_elected_replica_and_moves_when_it_dies(
    replicas: Gateways, telegram: FakeTelegram, llm_server: FakeLLMServer
) -> None:
    carol = telegram.make_user("Carol", username="carol_r")
    chat = telegram.private_chat(carol)
    telegram.user_sends(chat, carol, "hello")
    await until("the answer", replicas, lambda: answered(replicas, chat), STEP_TIMEOUT)
    logs = [(replicas.directory / f"gateway-{n}.log").read_text() for n in (1, 2)]
    leaders = [n for n, log in enumerate(logs) if "telegram adapter runs on replica" in log]
    assert len(leaders) == 1, replicas.logs()  # two pollers would steal each other's updates
    leader = replicas.procs[leaders[0]]
    leader.kill()
    assert await waited("the leader's exit", replicas, leader.wait(), 10) == -signal.SIGKILL
    telegram.user_sends(chat, carol, "still there?")
    await until(
        "the standby replica to take over polling and answer",
        replicas,
        lambda: len(answered(replicas, chat)) >= 2,
        TAKEOVER_TIMEOUT,
    )
    assert len(answered(replicas, chat)) == 2
