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

from adapters.webchat.greeting import agent_card, greeting_text
from adapters.webchat.inbound import client_of, inbound_message, scope_of
from adapters.webchat.markdown import render_markdown
from gateway.app import Gateway
from gateway.config_loader import load_config
from runtime.agents import Agent, AgentSpec
from runtime.providers.echo import EchoProvider
from runtime.providers.openai import OpenAIProvider

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


# -- rendering and greeting (pure) -------------------------------------------------------


def test_markdown_renders_blocks_and_keeps_html_and_bad_links_out() -> None:
    html = render_markdown(
        "# Plan\n\n- one\n- two\n\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "<script>alert(1)</script> [x](javascript:alert(1)) [ok](https://example.com)"
    )
    assert "<h1>Plan</h1>" in html
    assert "<li>one</li>" in html
    assert "<blockquote>" in html
    assert "<td>1</td>" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript:' not in html
    assert '<a href="https://example.com" target="_blank" rel="noopener noreferrer">ok</a>' in html
    assert "<img" not in render_markdown("![pic](https://example.com/p.png)")


async def test_greeting_names_agent_model_and_the_echo_fix() -> None:
    echo = Agent(
        spec=AgentSpec(name="assistant", provider="e", model="echo"), provider=EchoProvider()
    )
    text = greeting_text(echo)
    assert "**assistant**" in text
    assert "offline **echo** model" in text
    assert "OPENAI_API_KEY" in text
    assert "/help" in text
    real_provider = OpenAIProvider("o", base_url="http://127.0.0.1:9/v1", api_key="k")
    try:
        real = Agent(
            spec=AgentSpec(name="writer", provider="o", model="gpt-x"), provider=real_provider
        )
        card = agent_card(real)
    finally:
        await real_provider.aclose()
    assert (card["provider"], card["model"]) == ("openai", "gpt-x")
    assert "`gpt-x` (openai)" in card["greeting"]
    assert "echo" not in card["greeting"]
    assert "<code>/help</code>" in card["greeting_html"]


# -- history, new chat, typing, status ------------------------------------------------------


def is_history(frame: Frame) -> bool:
    return bool(frame["type"] == "history")


def turn_texts(frame: Frame) -> list[tuple[str, str]]:
    return [(t["role"], t["text"]) for t in frame["turns"]]


async def test_welcome_describes_each_agent_and_history_starts_empty(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    welcome = await page.hello()
    info = welcome["agent_info"]["assistant"]
    assert (info["provider"], info["model"]) == ("echo", "echo")
    assert "echo" in info["greeting"]
    history = await page.expect(is_history)
    assert (history["agent"], history["topic"], history["turns"]) == ("assistant", None, [])
    assert history["running"] is False


async def test_reload_shows_the_scratch_chat_and_a_restart_the_active_topic(
    start: StartGateway,
) -> None:
    h = await start()
    page = await h.connect("reloading-client")
    await page.hello()
    await page.say("scratch **words**")
    await page.expect_text("scratch **words**")
    await page.expect(lambda f: f["type"] == "typing" and not f["active"])
    reloaded = await h.connect("reloading-client")
    await reloaded.hello()
    history = await reloaded.expect(is_history)
    assert turn_texts(history) == [
        ("user", "scratch **words**"),
        ("assistant", "scratch **words**"),
    ]
    assert history["turns"][1]["html"] == "<p>scratch <strong>words</strong></p>\n"
    assert "html" not in history["turns"][0]  # the page shows user text as typed
    # A topic is stored: after a restart the page shows it again.
    await page.say("/topic work")
    await page.expect(lambda f: is_history(f) and f["topic"] == "work")
    await page.say("kept across restarts")
    await page.expect_text("kept across restarts")
    await page.expect(lambda f: f["type"] == "typing" and not f["active"])
    await h.gateway.stop()
    h2 = await start()
    after = await h2.connect("reloading-client")
    await after.hello()
    history = await after.expect(is_history)
    assert history["topic"] == "work"
    assert turn_texts(history) == [
        ("user", "kept across restarts"),
        ("assistant", "kept across restarts"),
    ]


async def test_new_chat_keeps_the_scratch_chat_and_a_topic_click_shows_it(
    start: StartGateway,
) -> None:
    h = await start()
    page = await h.connect()
    await page.hello()
    await page.expect(is_history)
    await page.say("remember the milk")
    await page.expect_text("remember the milk")
    await page.expect(lambda f: f["type"] == "typing" and not f["active"])
    await page.say("/new")
    fresh = await page.expect(is_history)
    assert (fresh["topic"], fresh["turns"]) == (None, [])
    notice = await page.expect(lambda f: f["type"] == "notice")
    key = notice["text"].split("the topic ", 1)[1].split(" ", 1)[0]
    assert key.startswith("chat-")
    topics = await page.expect(lambda f: f["type"] == "topics" and f["topics"])
    assert [(t["key"], t["active"]) for t in topics["topics"]] == [(key, False)]
    await page.say(f"/topic {key}")
    shown = await page.expect(lambda f: is_history(f) and f["topic"] == key)
    assert turn_texts(shown) == [("user", "remember the milk"), ("assistant", "remember the milk")]
    assert shown["title"] == "remember the milk"


async def test_typing_stays_on_until_a_steered_reply_has_finished(start: StartGateway) -> None:
    h = await start(word_delay=0.02)
    page = await h.connect()
    await page.hello()
    await page.say(words(15))
    await page.expect(lambda f: f["type"] == "message")
    await page.say("and also this")
    await page.expect(lambda f: f["type"] == "ack")
    await page.expect_text(words(15))
    await page.expect_text("and also this")
    await page.expect(lambda f: f["type"] == "typing" and not f["active"])
    texts = [f.get("text") if f["type"] in ("message", "edit") else None for f in page.frames]
    finished = texts.index("and also this")
    offs = [i for i, f in enumerate(page.frames) if f["type"] == "typing" and not f["active"]]
    # Without the fix the first run's "off" lands while the steered reply still streams.
    assert offs[0] > finished, [(f["type"], f.get("active"), f.get("text")) for f in page.frames]


async def test_reload_during_a_reply_shows_it_running(start: StartGateway) -> None:
    h = await start(word_delay=0.05)
    page = await h.connect("busy-client")
    await page.hello()
    await page.say(words(40))
    await page.expect(lambda f: f["type"] == "message")
    again = await h.connect("busy-client")
    await again.hello()
    history = await again.expect(is_history)
    assert history["running"] is True
    assert turn_texts(history) == [("user", words(40))]
    await again.send(type="stop", agent="assistant")
    await again.expect(lambda f: f["type"] == "typing" and not f["active"])


async def test_status_counts_tokens_in_a_scratch_chat(start: StartGateway) -> None:
    h = await start()
    page = await h.connect()
    await page.hello()
    await page.say("count these words please")
    await page.expect_text("count these words please")
    await page.expect(lambda f: f["type"] == "typing" and not f["active"])
    await page.say("/status")
    status = await page.expect(lambda f: f["type"] == "message" and "tokens:" in f["text"])
    assert "scratch conversation" in status["text"]
    prompt = int(status["text"].split("tokens: ", 1)[1].split(" prompt", 1)[0])
    assert prompt > 0
