"""Bad input gets 4xx, never 5xx or a traceback: the Telegram webhook and Slack HTTP mode
fuzzed with a few hundred random and malformed bodies and headers.

One real Gateway serves both routes on 127.0.0.1 port 0, against the fake Telegram and
the fake Slack. The random source is seeded, so a failure replays.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator
from copy import deepcopy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from tests.fakes.slack_api import FakeSlack, sign_request
from tests.fakes.telegram_api import SECRET_HEADER, FakeTelegram
from tests.runtime_helpers import wait_for

ROUNDS = 300
HOOK_SECRET = "hook-secret_42"
SIGNING_SECRET = "fuzz-signing-secret"
Json = Any

CONFIG = """
default_agent = "bot"
shutdown_grace = 0.5
[server]
host = "127.0.0.1"
port = 0
[storage]
path = {db}
[providers.main]
kind = "echo"
word_delay = 0
[agents.bot]
provider = "main"
[adapters.telegram]
token = {tg_token}
base_url = {tg_url}
base_file_url = {tg_file_url}
mode = "webhook"
webhook_secret = {hook_secret}
access = "open"
edit_interval = 0.01
[adapters.slack]
bot_token = {bot_token}
signing_secret = {signing_secret}
api_url = {api_url}
mode = "http"
edit_interval = 0.01
"""


class Served:
    def __init__(
        self,
        gateway: Gateway,
        telegram: FakeTelegram,
        slack: FakeSlack,
        session: aiohttp.ClientSession,
    ) -> None:
        self.gateway = gateway
        self.telegram = telegram
        self.slack = slack
        self.session = session
        assert gateway.server is not None
        self.telegram_url = f"{gateway.server.url}/telegram/webhook"
        self.slack_url = f"{gateway.server.url}/slack/events"

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    telegram, slack = FakeTelegram(), FakeSlack()
    await telegram.start()
    await slack.start()
    values = {
        "db": str(tmp_path / "gateway.db"),
        "tg_token": telegram.token,
        "tg_url": telegram.base_url,
        "tg_file_url": telegram.base_file_url,
        "hook_secret": HOOK_SECRET,
        "bot_token": slack.bot_token,
        "signing_secret": SIGNING_SECRET,
        "api_url": slack.api_url,
    }
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(**{key: json.dumps(value) for key, value in values.items()}))
    gateway = Gateway(load_config(path, {}))
    await gateway.start()
    try:
        await wait_for(
            lambda: all(entry.state == "connected" for entry in gateway.supervised.values())
        )
        async with aiohttp.ClientSession() as session:
            yield Served(gateway, telegram, slack, session)
        runtime, pipeline = gateway.runtime, gateway.pipeline
        assert runtime is not None
        assert pipeline is not None
        # Replies to the updates that were valid finish before the logs are judged.
        await wait_for(lambda: not runtime.active_runs() and not pipeline.renderers, timeout=20)
    finally:
        await gateway.stop()
        await slack.stop()
        await telegram.stop()


# -- random material --------------------------------------------------------------------


def random_json(rng: random.Random, depth: int = 0) -> Json:
    choice = rng.randrange(9 if depth < 3 else 6)
    scalars: list[Json] = [
        None,
        rng.choice([True, False]),
        rng.randint(-(2**70), 2**70),
        rng.choice([rng.random() * 10 ** rng.randint(-5, 5), 1e308, -0.0]),
        "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 12))),
        rng.choice(["", "message", "event_callback", "url_verification", "{", "0", "-1"]),
    ]
    if choice < 6:
        return scalars[choice]
    if choice < 8:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "type", "event", "id"]): random_json(rng, depth + 1)}


def mutate(rng: random.Random, document: Json, keep: frozenset[str] = frozenset()) -> Json:
    """``document`` with one field at a random depth replaced by junk, or removed.

    Keys in ``keep`` stay as they are: a valid update for a chat the fake does not know
    is answered 200 and then fails to deliver, which is not what this test is about.
    """
    copy = deepcopy(document)
    node = copy
    while True:
        keys = (
            [k for k in node if k not in keep] if isinstance(node, dict) else list(range(len(node)))
        )
        if not keys:
            return copy
        key = rng.choice(keys)
        child = node[key]
        if isinstance(child, dict | list) and child and rng.random() < 0.6:
            node = child
            continue
        if isinstance(node, dict) and rng.random() < 0.2:
            del node[key]
        else:
            node[key] = random_json(rng)
        return copy


def garbage(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))


# -- Telegram ---------------------------------------------------------------------------


KEEP = frozenset({"chat", "message_thread_id"})


def telegram_update(fake: FakeTelegram, update_id: int) -> Json:
    user = fake.make_user("Fuzz", username="fuzz", user_id=4242)
    chat = fake.private_chat(user)
    entities = [{"type": "bot_command", "offset": 6, "length": 5}]
    message = fake.user_sends(chat, user, "hello /help", entities=entities)
    return {"update_id": update_id, "message": message}


def telegram_case(
    rng: random.Random, fake: FakeTelegram, index: int
) -> tuple[bytes, dict[str, str]]:
    headers = {SECRET_HEADER: HOOK_SECRET, "Content-Type": "application/json"}
    kind = rng.randrange(10)
    if kind == 0:
        headers[SECRET_HEADER] = rng.choice(["", "wrong", HOOK_SECRET + "x", "ü"])
    if kind == 1:
        return garbage(rng), headers
    if kind == 2:
        return json.dumps(random_json(rng)).encode(), headers
    if kind == 3:
        headers["Content-Type"] = rng.choice(["text/plain", "application/x-www-form-urlencoded"])
    return json.dumps(mutate(rng, telegram_update(fake, index), KEEP)).encode(), headers


async def test_telegram_webhook_answers_bad_input_with_4xx(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(1305)
    url, headers = served.telegram_url, {SECRET_HEADER: HOOK_SECRET}

    # The case from the issue, and a well-formed update for contrast.
    assert await served.post(url, b'{"update_id":1,"message":5}', headers) == 400
    assert await served.post(url, b"[1, 2]", headers) == 400
    assert (
        await served.post(url, json.dumps(telegram_update(served.telegram, 2)).encode(), headers)
        == 200
    )
    statuses = []
    for index in range(3, ROUNDS + 3):
        body, case_headers = telegram_case(rng, served.telegram, index)
        statuses.append(await served.post(url, body, case_headers))

    assert all(status < 500 for status in statuses), sorted(set(statuses))
    assert {200, 400, 403} <= set(statuses)  # the fuzz reached every outcome
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- Slack ------------------------------------------------------------------------------


def signed(body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign_request(SIGNING_SECRET, ts, body.decode("utf-8", "replace")),
    }


def slack_case(rng: random.Random, slack: FakeSlack) -> tuple[bytes, dict[str, str]]:
    kind = rng.randrange(8)
    if kind == 0:  # unsigned garbage, with or without headers that look right
        body = garbage(rng)
        return body, rng.choice(
            [{}, {"X-Slack-Request-Timestamp": "now", "X-Slack-Signature": "v0=0"}]
        )
    if kind == 1:  # a stale or non-numeric timestamp, correctly signed
        body = b'{"type": "event_callback"}'
        stamp = rng.choice(
            ["abc", "-1", "1e9", " 17", "١٢٣", str(int(time.time()) - 301), "9" * 40]
        )
        return body, signed(body, timestamp=stamp)
    if kind == 2:  # signed random JSON
        body = json.dumps(random_json(rng)).encode()
        return body, signed(body)
    if kind == 3:  # signed form bodies, as slash commands and interactions arrive
        payload = json.dumps(random_json(rng))
        body = (
            quote(payload).encode() if rng.random() < 0.5 else b"payload=" + quote(payload).encode()
        )
        headers = signed(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return body, headers
    event = slack.message_event("D0FUZZ0001", "U0FUZZ0001", "hello")
    body = json.dumps(mutate(rng, slack.event_callback(event), KEEP)).encode()
    return body, signed(body)


async def test_slack_http_mode_answers_bad_input_with_4xx(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(1005)
    url, slack = served.slack_url, served.slack

    # The cases from the issue: each is refused before anything parses the body.
    assert await served.post(url, b"\x00garbage", {}) == 401
    now_body = b'{"type": "event_callback"}'
    assert await served.post(url, now_body, signed(now_body, timestamp="soon")) == 401
    assert await served.post(url, b"[1, 2, 3]", signed(b"[1, 2, 3]")) == 400
    good = json.dumps(slack.event_callback(slack.message_event("D0FUZZ0002", "U0FUZZ0002", "hi")))
    assert await served.post(url, good.encode(), signed(good.encode())) == 200
    statuses = []
    for _ in range(ROUNDS):
        body, headers = slack_case(rng, slack)
        statuses.append(await served.post(url, body, headers))

    assert all(status < 500 for status in statuses), sorted(set(statuses))
    assert {200, 400, 401} <= set(statuses)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
