"""Crash recovery through the durable inbox (issue 10.1).

The first test runs the real `agent-gateway` process against the fake Telegram Bot API
and the fake OpenAI-compatible server, SIGKILLs it while a reply is streaming, starts a
second process on the same storage and checks the message is answered exactly once:
with the update confirmed to Telegram before the crash (only the durable inbox brings it
back) and with Telegram delivering it again too (the inbox must also drop the duplicate).
Exactly once is judged after the second process has exited, so nothing is still on its
way: one final message per question, two model calls for it (the killed one and the
redone one, carrying it once), two runs. The last test checks, in process, that a
message older than the recovery window gets the "restarted" note once, not an answer.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from gateway.ledger import encode, inbox_id
from gateway.upkeep import RECOVERY_WINDOW, RESTARTED_NOTE
from runtime.storage.base import InboxRecord
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.llm_server import FakeLLMServer, Script, Text
from tests.fakes.telegram_api import JSON, FakeTelegram
from tests.gateway_procs import (
    START_TIMEOUT,
    STEP_TIMEOUT,
    Gateways,
    child_env,
    echoed,
    run_requests,
    until,
    user_texts,
    waited,
)
from tests.pipeline_helpers import dm, rig

SHUTDOWN_GRACE = 1.0

CONFIG = """
default_agent = "bot"
shutdown_grace = {grace}
[server]
host = "127.0.0.1"
port = 0
[storage]
path = "{db}"
[logging]
level = "INFO"
[providers.llm]
kind = "openai"
base_url = "{llm}/v1"
api_key = "${{OPENAI_API_KEY}}"
max_retries = 0
[agents.bot]
provider = "llm"
model = "fake-model"
system_prompt = "Be brief."
tools = []
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = "{tg}"
base_file_url = "{tg_files}"
mode = "polling"
access = "open"
edit_interval = 0.1
"""


@pytest.fixture
async def gateways(
    tmp_path: Path, telegram: FakeTelegram, llm_server: FakeLLMServer
) -> AsyncIterator[Gateways]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG.format(
            grace=SHUTDOWN_GRACE,
            db=tmp_path / "gateway.db",
            llm=llm_server.url,
            tg=telegram.base_url,
            tg_files=telegram.base_file_url,
        ),
        encoding="utf-8",
    )
    env = child_env(TELEGRAM_BOT_TOKEN=telegram.token, OPENAI_API_KEY="sk-fake")
    running = Gateways(
        directory=tmp_path, config=config, env=env, telegram=telegram, llm=llm_server
    )
    try:
        yield running
    finally:
        for proc in running.procs:  # a failed test must not leave a gateway behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def inbox_states(db: Path) -> dict[str, str]:
    async with aiosqlite.connect(db) as conn:
        rows = await conn.execute_fetchall("SELECT id, state FROM inbox")
    return {str(i): str(s) for i, s in rows}


ASKED = "what is the capital of France?"


async def kill_mid_reply(gateways: Gateways, chat: int, user: JSON) -> str:
    """Start a gateway, SIGKILL it while its reply streams; the message's inbox id."""
    telegram, llm = gateways.telegram, gateways.llm
    held = asyncio.Event()  # never set: this reply streams until the process dies
    llm.script(Script(steps=[Text("Thinking "), Text("about it")], gate=held))
    first = await gateways.start()
    await until("the gateway to poll", gateways, lambda: telegram.waiting_pollers, START_TIMEOUT)
    sent = telegram.user_sends(chat, user, ASKED)
    await waited("the model call", gateways, llm.wait_for_requests(1, STEP_TIMEOUT), STEP_TIMEOUT)
    drafts = await until(
        "a streamed draft", gateways, lambda: telegram.transcript(chat).drafts, STEP_TIMEOUT
    )
    assert "Thinking" in drafts[-1].text
    # The update was confirmed to Telegram: only the durable inbox can bring it back.
    await until(
        "the update's confirmation", gateways, lambda: not telegram.pending_updates, STEP_TIMEOUT
    )
    first.kill()
    assert await waited("the killed gateway's exit", gateways, first.wait(), 10) == -signal.SIGKILL
    return f"telegram:{chat}:{sent['message_id']}"


@pytest.mark.parametrize("redelivered", [False, True], ids=["confirmed", "redelivered"])
async def test_a_gateway_killed_mid_reply_answers_once_after_restart(
    tmp_path: Path,
    telegram: FakeTelegram,
    llm_server: FakeLLMServer,
    gateways: Gateways,
    redelivered: bool,
) -> None:
    alice = telegram.make_user("Alice", username="alice_w")
    chat = telegram.private_chat(alice)
    key = await kill_mid_reply(gateways, chat, alice)
    assert await inbox_states(tmp_path / "gateway.db") == {key: "accepted"}, gateways.logs()
    assert telegram.sent_messages(chat) == []  # drafts only: no message was sent yet
    if redelivered:  # Telegram sends it again too, as when a crash beat the confirmation
        [update] = [u for u in telegram.all_updates if "message" in u]
        telegram.redeliver(update["update_id"])

    second = await gateways.start()
    await until(
        "the recovered answer", gateways, lambda: telegram.sent_messages(chat), START_TIMEOUT
    )
    # The chat's lane is FIFO: once a later message is answered, a second answer to the
    # first can no longer be on its way.
    telegram.user_sends(chat, alice, "thanks")
    await until(
        "the answer to a later message",
        gateways,
        lambda: len(telegram.sent_messages(chat)) >= 2,
        STEP_TIMEOUT,
    )
    counts = await gateways.counters(2)
    assert counts.get("duplicates_dropped", 0) == (1 if redelivered else 0), counts
    await until("every update confirmed", gateways, lambda: not telegram.pending_updates, 5)

    second.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await waited("the second gateway to stop", gateways, second.wait(), SHUTDOWN_GRACE + 5)
    assert code == 0, gateways.logs()
    assert time.monotonic() - started < SHUTDOWN_GRACE + 5
    # Both gateways are gone: what the chat and the model saw is now final.
    texts = [m.text for m in telegram.sent_messages(chat)]
    assert texts == [echoed(llm_server, ASKED), echoed(llm_server, "thanks")], gateways.logs()
    calls = run_requests(llm_server, ASKED)
    assert len(calls) == 2, [user_texts(c) for c in calls]  # the killed run, then redone
    killed, redone = calls
    # Redone once: the redone call carries the message once (not also steered in again).
    assert user_texts(redone).count(user_texts(killed)[-1]) == 1, user_texts(redone)
    assert counts["runs"] == 2, counts  # the recovered message and "thanks", once each
    states = await inbox_states(tmp_path / "gateway.db")
    assert states[key] == "answered"
    assert set(states.values()) == {"answered"}, states


async def test_a_message_older_than_the_window_gets_the_restarted_note_once(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "gw.db")
    await storage.open()
    try:
        lost = dm("are you there?", message_id="old-1")
        record = InboxRecord(
            id=inbox_id(lost),
            platform=lost.platform,
            payload=encode(lost),
            state="accepted",
            accepted_at=time.time() - 20 * 60,
        )
        assert RECOVERY_WINDOW < 20 * 60
        assert await storage.accept_inbound([record]) == [True]
        async with rig(storage=storage) as r:
            await r.pipeline.upkeep.recover()
            await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == [RESTARTED_NOTE])
            assert await storage.unanswered_inbound() == []

            await r.pipeline.upkeep.recover()

            assert r.adapter.chat("dm42") == [RESTARTED_NOTE]
            assert r.provider.requests == []  # not answered, only told to send it again
        # Settled as expired, so the ledger still drops a late redelivery of it.
        assert await storage.accept_inbound([record]) == [False]
        async with aiosqlite.connect(tmp_path / "gw.db") as conn:
            rows = await conn.execute_fetchall("SELECT id, state FROM inbox")
        assert [tuple(row) for row in rows] == [(record.id, "expired")]
    finally:
        await storage.close()
