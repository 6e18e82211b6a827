"""The web chat end to end at the protocol level: a real Gateway built from a config file
(echo model, webchat only, port 0), driven by aiohttp's websocket client as the page
would drive it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.webchat.adapter import client_of, inbound_message, scope_of
from gateway.app import Gateway
from gateway.config_loader import load_config

Frame = dict[str, Any]
TIMEOUT = 5.0

CONFIG = """
default_agent = "assistant"
shutdown_grace = 0.5

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

[agents.helper]
provider = "echo"

[adapters.webchat]
enabled = true
edit_interval = 0.05
"""


def write_config(tmp_path: Path, *, word_delay: float) -> Path:
    path = tmp_path / "gateway.toml"
    db = json.dumps(str(tmp_path / "gateway.db"))
    path.write_text(CONFIG.format(db=db, word_delay=word_delay), encoding="utf-8")
    return path


class PageClient:
    """One browser tab, reduced to its websocket: records every frame and the current
    text of every assistant message (after its edits)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.frames: list[Frame] = []
        self.texts: dict[str, str] = {}
        self._unclaimed: list[Frame] = []

    async def send(self, **frame: Any) -> None:
        await self.ws.send_json(frame)

    async def say(self, text: str, *, agent: str = "assistant") -> str:
        message_id = uuid.uuid4().hex[:12]
        await self.send(type="message", id=message_id, text=text, agent=agent)
        return message_id

    async def hello(self, agent: str = "assistant") -> Frame:
        await self.send(type="hello", client_id=self.client_id, agent=agent)
        return await self.expect(lambda f: f["type"] == "welcome")

    async def expect(self, predicate: Callable[[Frame], bool], timeout: float = TIMEOUT) -> Frame:
        """The first frame, in arrival order, that matches and that no earlier ``expect``
        returned: frames read on the way stay available to later calls."""
        for index, frame in enumerate(self._unclaimed):
            if predicate(frame):
                return self._unclaimed.pop(index)

        async def read() -> Frame:
            while True:
                msg = await self.ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"the socket ended while waiting: {msg!r}")
                frame: Frame = json.loads(msg.data)
                self.frames.append(frame)
                if frame["type"] in ("message", "edit"):
                    self.texts[frame["id"]] = frame["text"]
                if predicate(frame):
                    return frame
                self._unclaimed.append(frame)

        return await asyncio.wait_for(read(), timeout)

    async def expect_text(self, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until some assistant message shows exactly ``text``; returns its id."""
        if text not in self.texts.values():
            await self.expect(lambda f: f["type"] in ("message", "edit") and f["text"] == text)
        return next(i for i, t in self.texts.items() if t == text)


class Harness:
    def __init__(self, gateway: Gateway, session: aiohttp.ClientSession) -> None:
        self.gateway = gateway
        self.session = session
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []

    @property
    def url(self) -> str:
        assert self.gateway.server is not None
        return self.gateway.server.url

    async def connect(self, client_id: str | None = None) -> PageClient:
        ws = await self.session.ws_connect(f"{self.url}/ws")
        self.sockets.append(ws)
        return PageClient(ws, client_id or uuid.uuid4().hex[:16])

    async def wait_connected(self, page: PageClient) -> None:
        """An answered command proves the adapter's ``run`` holds the sink."""
        await page.say("/help")
        await page.expect(lambda f: f["type"] == "message" and "/help" in f["text"])


StartGateway = Callable[..., Any]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartGateway]:
    harnesses: list[Harness] = []

    async def start_gateway(word_delay: float = 0.01) -> Harness:
        config = load_config(write_config(tmp_path, word_delay=word_delay), env={})
        gateway = Gateway(config)
        await gateway.start()
        harness = Harness(gateway, aiohttp.ClientSession())
        harnesses.append(harness)
        return harness

    yield start_gateway
    for harness in harnesses:
        for ws in harness.sockets:
            await ws.close()
        await harness.session.close()
        await harness.gateway.stop()


def words(count: int, prefix: str = "word") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


# -- pure pieces -----------------------------------------------------------------------


def test_inbound_message_is_a_direct_addressed_message_of_the_client() -> None:
    message = inbound_message("abc", "hi", message_id="m1", user_name="", agent="helper")
    assert message.platform == "webchat"
    assert message.message_id == "abc:m1"
    assert (message.user_id, message.user_name) == ("abc", "you")
    assert message.scope == "webchat:user:abc" == scope_of("abc")
    assert message.is_direct
    assert message.addressed
    assert (message.target.platform, message.target.chat_id) == ("webchat", "abc")
    assert message.agent == "helper"
    assert client_of(message.scope) == "abc"
    assert client_of("telegram:user:abc") is None


# -- end to end ------------------------------------------------------------------------


async def test_welcome_lists_agents_and_health_is_ready(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    welcome = await page.hello()
    assert welcome["agents"] == ["assistant", "helper"]
    assert welcome["default_agent"] == "assistant"
    topics = await page.expect(lambda f: f["type"] == "topics")
    assert topics["topics"] == []
    await h.wait_connected(page)
    async with h.session.get(f"{h.url}/healthz") as resp:
        assert resp.status == 200
    async with h.session.get(f"{h.url}/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["adapters"]["webchat"]["state"] == "connected"


async def test_page_is_served_with_a_nonce_csp(start: StartGateway) -> None:
    h = await start()
    async with h.session.get(f"{h.url}/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        body = await resp.text()
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in body
    assert "__NONCE__" not in body
    assert "default-src 'none'" in csp


async def test_message_gets_a_streamed_reply_then_a_title(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    await page.hello()
    text = words(12)
    await page.say(text)
    first = await page.expect(lambda f: f["type"] == "message")
    await page.expect(lambda f: f["type"] == "typing" and not f["active"])
    assert page.texts[first["id"]] == text
    edits = [f for f in page.frames if f["type"] == "edit" and f["id"] == first["id"]]
    assert edits, "the reply should stream as edits of its first message"
    typing = [f["active"] for f in page.frames if f["type"] == "typing"]
    assert typing[0] is True
    assert typing[-1] is False
    # The conversation is a scratch (tmp) one: the title still reaches the page header.
    title = await page.expect(lambda f: f["type"] == "title" and f["title"])
    assert title["title"] == words(5)


async def test_help_is_answered(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    await page.hello()
    await page.say("/help")
    reply = await page.expect(lambda f: f["type"] == "message")
    assert "/topic" in reply["text"]
    assert "/stop" in reply["text"]


async def test_message_during_a_reply_is_acknowledged_and_answered(start: StartGateway) -> None:
    h = await start(word_delay=0.02)
    page = await h.connect()
    await page.hello()
    first_text = words(30)
    await page.say(first_text)
    await page.expect(lambda f: f["type"] == "message")
    second_id = await page.say("and also this")
    ack = await page.expect(lambda f: f["type"] == "ack")
    assert ack["message_id"] == second_id
    assert ack["emoji"] == "\N{EYES}"
    await page.expect_text(first_text)
    await page.expect_text("and also this")


async def test_stop_frame_stops_the_reply(start: StartGateway) -> None:
    h = await start(word_delay=0.05)
    page = await h.connect()
    await page.hello()
    await page.say(words(100))
    reply = await page.expect(lambda f: f["type"] == "message")
    await page.send(type="stop", agent="assistant")
    await page.expect(lambda f: f["type"] == "message" and f["text"] == "Stopped.")
    await page.expect(lambda f: f.get("id") == reply["id"] and "(stopped)" in f["text"])


async def test_topic_command_lists_the_topic_and_titles_it(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    await page.hello()
    await page.say("/topic work")
    await page.expect(lambda f: f["type"] == "message" and "Switched to topic work" in f["text"])
    topics = await page.expect(lambda f: f["type"] == "topics" and f["topics"])
    assert topics["topics"] == [{"key": "work", "title": "", "active": True}]
    await page.say("plan the quarterly review please")
    await page.expect_text("plan the quarterly review please")
    titled = await page.expect(
        lambda f: f["type"] == "topics" and any(t["title"] for t in f["topics"])
    )
    assert titled["topics"][0]["title"] == "plan the quarterly review please"
    title = await page.expect(lambda f: f["type"] == "title" and f["title"])
    assert title["title"] == "plan the quarterly review please"
    await page.say("/title Q3 review")
    await page.expect(lambda f: f["type"] == "message" and f["text"] == "Title set: Q3 review")
    await page.expect(lambda f: f["type"] == "title" and f["title"] == "Q3 review")


async def test_every_tab_of_a_client_sees_the_chat(start: StartGateway) -> None:
    h = await start()
    tab1 = await h.connect("shared-client")
    tab2 = await h.connect("shared-client")
    await tab1.hello()
    await tab2.hello()
    sent = await tab1.say("hello from tab one")
    echoed = await tab2.expect(lambda f: f["type"] == "user")
    assert (echoed["id"], echoed["text"]) == (sent, "hello from tab one")
    await tab1.expect_text("hello from tab one")
    await tab2.expect_text("hello from tab one")


async def test_bad_frames_are_answered_with_an_error(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    await page.send(type="message", id="m1", text="too early")
    assert (await page.expect(lambda f: True))["text"] == "Say hello first."
    await page.ws.send_str("not json")
    assert (await page.expect(lambda f: True))["type"] == "error"
    await page.send(type="hello", client_id="bad id with spaces")
    assert (await page.expect(lambda f: True))["type"] == "error"


async def test_cross_origin_socket_is_refused(start: StartGateway) -> None:
    h = await start()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await h.session.ws_connect(f"{h.url}/ws", origin="http://evil.example")
    assert caught.value.status == 403
    same = await h.session.ws_connect(f"{h.url}/ws", origin=h.url)
    h.sockets.append(same)
    assert not same.closed


async def test_stop_closes_open_sockets_cleanly(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    await page.hello()
    await h.wait_connected(page)

    async def until_closed() -> aiohttp.WSMessage:
        while True:
            msg: aiohttp.WSMessage = await page.ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return msg

    closed, _ = await asyncio.wait_for(asyncio.gather(until_closed(), h.gateway.stop()), 5)
    assert closed.type is aiohttp.WSMsgType.CLOSE
    assert closed.data == aiohttp.WSCloseCode.GOING_AWAY
    assert h.gateway.supervised["webchat"].adapter.state == "stopped"
