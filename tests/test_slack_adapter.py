"""The Slack adapter end to end: a real Gateway built from a config file, the real
slack-bolt / slack-sdk clients, and the fake Slack (Web API, Socket Mode, signed HTTP).
Most scenarios run in both Socket Mode and HTTP mode."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import ChatTarget, InboundMessage
from adapters.errors import MessageTooLong, RateLimited
from adapters.slack import socket as slack_socket
from adapters.slack.adapter import SlackAdapter
from adapters.slack.inbound import thread_scope
from adapters.slack.outbound import SlackStream
from adapters.text.format import TextFormat
from adapters.text.slack_mrkdwn import to_slack_mrkdwn
from gateway.app import Gateway
from gateway.config_loader import load_config
from gateway.delivery import DeliveryOptions
from runtime.history import UserEntry
from runtime.providers.base import ModelProvider
from tests.fakes.scripted_provider import Call, Gate, ScriptedProvider, Text
from tests.fakes.slack_api import FakeSlack, SlackMessage
from tests.gateway_config import slack_section, write_gateway_toml

DM = "D0DIRECT01"
CHANNEL = "C0GENERAL1"
USER = "U0HUMAN001"
OTHER = "U0HUMAN002"
SECRET = "test-signing-secret"
TIMEOUT = 5.0
T = TypeVar("T")

GREETING = """
greeting = "Hello from the gateway."
suggested_prompts = [{ title = "Plan", message = "Plan my week" }]
"""


async def until(predicate: Callable[[], T | None], timeout: float = TIMEOUT) -> T:
    """For state the fake cannot signal (the gateway's own): re-check until true."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.005)


@dataclass
class Harness:
    fake: FakeSlack
    gateway: Gateway
    mode: str
    handled: list[InboundMessage] = field(default_factory=list)  # what the sink was given
    stopped: bool = False

    def __post_init__(self) -> None:
        pipeline = self.gateway.pipeline
        assert pipeline is not None
        original = pipeline.handle

        async def spy(message: InboundMessage) -> bool:
            self.handled.append(message)
            return await original(message)

        pipeline.handle = spy  # type: ignore[method-assign]

    async def stop(self) -> None:
        self.stopped = True
        await self.gateway.stop()

    def seen(self, message_id: str) -> InboundMessage | None:
        return next((m for m in self.handled if m.message_id == message_id), None)

    @property
    def adapter(self) -> SlackAdapter:
        assert self.gateway.pipeline is not None
        adapter = self.gateway.pipeline.adapters["slack"]
        assert isinstance(adapter, SlackAdapter)
        return adapter

    @property
    def url(self) -> str:
        assert self.gateway.server is not None
        return f"{self.gateway.server.url}/slack/events"

    def count(self, metric: str) -> float:
        value: float = getattr(self.gateway.metrics, metric).value("slack")
        return value

    async def deliver(
        self, event: dict[str, Any], *, event_id: str | None = None, retry: int = 0
    ) -> None:
        """Deliver one event the way the mode does; returns once Slack has its ack."""
        if self.mode == "socket":
            envelope = await self.fake.send_event(event, retry_attempt=retry, event_id=event_id)
            await self.fake.wait_for_ack(envelope)
            return
        status, _ = await self.fake.deliver_http(
            self.url, event, signing_secret=SECRET, retry_num=retry or None, event_id=event_id
        )
        assert status == 200

    async def command(self, text: str, *, channel: str = DM, user: str = USER) -> None:
        if self.mode == "socket":
            envelope = await self.fake.send_slash_command(
                "/agent", text, channel=channel, user=user
            )
            await self.fake.wait_for_ack(envelope)
            return
        status, _ = await self.fake.deliver_slash_command_http(
            self.url, "/agent", text, channel=channel, user=user, signing_secret=SECRET
        )
        assert status == 200

    async def reply(self, channel: str, text: str, thread_ts: str | None = None) -> SlackMessage:
        """Wait until a finished bot message shows exactly ``text``."""

        def found() -> SlackMessage | None:
            for msg in self.fake.bot_messages(channel, thread_ts):
                if msg.text == text and not msg.streaming:
                    return msg
            return None

        return await self.fake.wait_for(found)

    async def idle(self) -> None:
        """Every run over and its reply delivered."""
        assert self.gateway.runtime is not None
        assert self.gateway.pipeline is not None
        runtime, pipeline = self.gateway.runtime, self.gateway.pipeline
        await until(lambda: not runtime.active_runs() and not pipeline.renderers)


Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@pytest.fixture
async def start(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Start]:
    harnesses: list[Harness] = []

    async def start_gateway(
        mode: str = "socket",
        *,
        provider: ModelProvider | None = None,
        bot_token: str | None = None,
        app_token: str | None = None,
        connect: bool = True,
    ) -> Harness:
        section = slack_section(
            fake,
            mode=mode,
            signing_secret=SECRET,
            bot_token=bot_token,
            app_token=app_token,
            extra=GREETING,
        )
        path = write_gateway_toml(
            tmp_path,
            section,
            agent="assistant",
            provider_keys="word_delay = 0.001",
            shutdown_grace=0.5,
        )
        config = load_config(path, env={})
        gateway = Gateway(config, providers={"main": provider} if provider else None)
        await gateway.start()
        harness = Harness(fake=fake, gateway=gateway, mode=mode)
        harnesses.append(harness)
        if connect:
            await until(lambda: harness.adapter.state == "connected")
        return harness

    yield start_gateway
    for harness in reversed(harnesses):
        if not harness.stopped:
            await harness.stop()


MODES = pytest.mark.parametrize("mode", ["socket", "http"])


# -- direct messages -------------------------------------------------------------------


@MODES
async def test_direct_message_gets_a_streamed_reply(start: Start, mode: str) -> None:
    slack = await start(mode)
    assert slack.gateway.readiness()[0] is True
    await slack.deliver(slack.fake.message_event(DM, USER, "hello there general kenobi"))
    reply = await slack.reply(DM, "hello there general kenobi")
    assert reply.thread_ts is None  # a DM outside threads is answered in the DM
    assert [c.token for c in slack.fake.calls_to("chat.postMessage")] == [slack.fake.bot_token]
    assert not slack.fake.calls_to("chat.startStream")  # streams need a thread
    assert slack.count("runs") == 1
    await slack.idle()
    assert slack.gateway.runtime is not None
    # Outside a thread a DM is a scratch conversation: nothing persisted.
    assert (
        await slack.gateway.storage.list_sessions(
            "assistant", f"slack:{slack.fake.team_id}:user:{USER}"
        )
        == []
    )


@MODES
async def test_command_for_another_bot_is_dropped(start: Start, mode: str) -> None:
    slack = await start(mode)
    other = slack.fake.message_event(DM, USER, "/new@otherbot")
    await slack.deliver(other)
    await slack.deliver(slack.fake.message_event(DM, USER, f"/new@{slack.fake.bot_name}"))
    await slack.reply(DM, "Started a new conversation.")
    assert [m.text for m in slack.handled] == ["/new"]
    assert slack.seen(f"{DM}:{other['ts']}") is None


# -- assistant threads -----------------------------------------------------------------


@MODES
async def test_assistant_thread_is_a_persisted_topic(start: Start, mode: str) -> None:
    slack = await start(mode)
    # The status shows at once here (by default only when nothing is visible after ~1 s).
    assert slack.gateway.pipeline is not None
    slack.gateway.pipeline.delivery = DeliveryOptions(typing_delay=0.0)
    fake = slack.fake
    started = fake.assistant_thread_started_event(DM, USER)
    thread_ts = started["assistant_thread"]["thread_ts"]
    await slack.deliver(started, event_id="Ev0STARTED")
    await slack.deliver(started, event_id="Ev0STARTED", retry=1)  # redelivered: no 2nd hello
    await slack.reply(DM, "Hello from the gateway.", thread_ts)
    prompts = await fake.wait_for(lambda: fake.thread(DM, thread_ts).suggested_prompts)
    assert prompts == ({"title": "Plan", "message": "Plan my week"},)
    # bolt's own calls (the greeting, the prompts) carry the bot token too.
    assert {c.token for c in fake.calls if c.method != "apps.connections.open"} == {fake.bot_token}

    await slack.deliver(fake.message_event(DM, USER, "plan my week please", thread_ts=thread_ts))
    reply = await slack.reply(DM, "plan my week please", thread_ts)
    assert reply.thread_ts == thread_ts
    chat_calls = [c.method for c in fake.calls if c.method.startswith("chat.")]
    streamed = chat_calls[chat_calls.index("chat.startStream") :]  # after the greeting
    assert streamed[-1] == "chat.stopStream"
    assert "chat.postMessage" not in streamed  # streamed natively, no fallback
    assert fake.calls_to("chat.startStream")[0].args["recipient_user_id"] == USER
    title = await fake.wait_for(lambda: fake.thread(DM, thread_ts).title)
    assert title == "plan my week please"
    await slack.idle()
    # "is thinking..." while the run is busy, cleared when it ends.
    assert fake.thread(DM, thread_ts).statuses == ("is thinking...", "")
    # A command answered in the thread does not keep the next run's status away.
    await slack.deliver(fake.message_event(DM, USER, "/status", thread_ts=thread_ts))
    await fake.wait_for(lambda: any("Agent:" in m.text for m in fake.bot_messages(DM)))
    await slack.deliver(fake.message_event(DM, USER, "one more", thread_ts=thread_ts))
    await slack.reply(DM, "one more", thread_ts)
    await slack.idle()
    assert fake.thread(DM, thread_ts).statuses == ("is thinking...", "") * 2
    greetings = [m for m in fake.bot_messages(DM) if m.text == "Hello from the gateway."]
    assert len(greetings) == 1
    scope = thread_scope(fake.team_id, DM, thread_ts)
    session = await slack.gateway.storage.find_session("assistant", scope, f"{DM}:{thread_ts}")
    assert session is not None
    assert session.title == title


async def test_tool_status_in_a_streamed_reply_is_replaced(start: Start) -> None:
    provider = ScriptedProvider("main")
    provider.script(Text("Let me check."), Call("get_time"))
    provider.script(Text("Done."))
    slack = await start(provider=provider)
    fake = slack.fake
    thread_ts = fake.next_ts()
    await slack.deliver(fake.message_event(DM, USER, "what time is it", thread_ts=thread_ts))
    # Whatever the status line showed meanwhile, one message ends with the reply alone.
    await slack.reply(DM, "Let me check.\n\nDone.", thread_ts)
    assert len(fake.bot_messages(DM, thread_ts)) == 1


async def test_streams_fall_back_to_post_and_update_once_refused(start: Start) -> None:
    slack = await start()
    fake = slack.fake
    fake.supports_streaming = False
    thread_ts = fake.next_ts()
    await slack.deliver(fake.message_event(DM, USER, "first words here", thread_ts=thread_ts))
    await slack.reply(DM, "first words here", thread_ts)
    await slack.idle()
    await slack.deliver(fake.message_event(DM, USER, "second ask", thread_ts=thread_ts))
    await slack.reply(DM, "second ask", thread_ts)
    # Probed once: the second reply did not try a stream.
    assert len(fake.calls_to("chat.startStream")) == 1
    assert len(fake.calls_to("chat.postMessage")) == 2


# -- channels: mentions and owned threads ----------------------------------------------


@MODES
async def test_mention_opens_a_thread_the_bot_then_follows(start: Start, mode: str) -> None:
    slack = await start(mode)
    fake = slack.fake
    fake.add_user(OTHER, name="bob", real_name="Bob Builder")
    mention = fake.app_mention_event(CHANNEL, USER, "first question")
    root = mention["ts"]
    await slack.deliver(mention)
    # Slack also sends the same message as message.channels: answered once.
    await slack.deliver({**mention, "type": "message", "channel_type": "channel"})
    reply = await slack.reply(CHANNEL, "first question", root)
    assert reply.thread_ts == root
    await slack.idle()
    assert slack.count("runs") == 1

    follow = fake.message_event(
        CHANNEL, OTHER, "a second voice", thread_ts=root, channel_type="channel"
    )
    await slack.deliver(follow)
    await slack.reply(CHANNEL, "a second voice", root)
    handled = slack.seen(f"{CHANNEL}:{follow['ts']}")
    assert handled is not None
    assert handled.addressed
    assert (handled.user_name, handled.scope) == ("bob", thread_scope(fake.team_id, CHANNEL, root))
    assert handled.match == {"team": fake.team_id, "channel": CHANNEL}

    elsewhere = fake.message_event(
        CHANNEL, USER, "not for the bot", thread_ts=fake.next_ts(), channel_type="channel"
    )
    await slack.deliver(elsewhere)
    seen = await until(lambda: slack.seen(f"{CHANNEL}:{elsewhere['ts']}"))
    assert not seen.addressed
    await slack.idle()
    assert slack.count("runs") == 2


async def test_owned_threads_survive_a_restart(start: Start) -> None:
    first = await start()
    fake = first.fake
    mention = fake.app_mention_event(CHANNEL, USER, "remember this thread")
    await first.deliver(mention)
    await first.reply(CHANNEL, "remember this thread", mention["ts"])
    await first.idle()
    await first.stop()

    second = await start()
    await second.deliver(
        fake.message_event(
            CHANNEL, USER, "still here?", thread_ts=mention["ts"], channel_type="channel"
        )
    )
    await second.reply(CHANNEL, "still here?", mention["ts"])
    # A redelivery of the first message after the restart is not answered again.
    await second.deliver({**mention, "type": "message", "channel_type": "channel"})
    await until(lambda: second.count("duplicates") == 1)


async def test_bot_messages_are_dropped(start: Start) -> None:
    slack = await start()
    fake = slack.fake
    mention = fake.app_mention_event(CHANNEL, USER, "hi bot")
    root = mention["ts"]
    await slack.deliver(mention)
    await slack.reply(CHANNEL, "hi bot", root)
    await slack.idle()
    own = [
        fake.bot_message_event(CHANNEL, "legacy bot", thread_ts=root),
        fake.bot_message_event(CHANNEL, "my own post", thread_ts=root, subtype=None),
    ]
    other = fake.bot_message_event(CHANNEL, "other app", bot_id="B0OTHER001", thread_ts=root)
    for event in [*own, other]:
        await slack.deliver(event)
    handled = await until(lambda: slack.seen(f"{CHANNEL}:{other['ts']}"))
    assert handled.from_bot
    # bolt already drops the app's own messages (acknowledged, never dispatched).
    assert all(slack.seen(f"{CHANNEL}:{e['ts']}") is None for e in own)
    await slack.idle()
    assert (slack.count("runs"), slack.count("messages_in")) == (1, 1)


# -- Slack retries ---------------------------------------------------------------------


@MODES
async def test_redelivered_events_start_no_second_run(start: Start, mode: str) -> None:
    slack = await start(mode)
    event = slack.fake.message_event(DM, USER, "only once please")
    await slack.deliver(event, event_id="Ev0ONCE")
    await slack.deliver(event, event_id="Ev0ONCE", retry=1)  # same event_id, retried
    await slack.deliver(event, event_id="Ev0TWICE", retry=2)  # a new id, same message
    await slack.reply(DM, "only once please")
    await slack.idle()
    assert slack.count("runs") == 1
    assert len(slack.fake.bot_messages(DM)) == 1


# -- slash commands --------------------------------------------------------------------


@MODES
async def test_slash_command_is_a_chat_command(start: Start, mode: str) -> None:
    slack = await start(mode)
    await slack.command("topic trip")
    await slack.reply(DM, "Switched to topic trip. Your next message goes there.")
    await slack.command("topics")
    await slack.reply(DM, "Your topics:\n* trip")
    await slack.command("")
    help_reply = await slack.fake.wait_for(
        lambda: [m for m in slack.fake.bot_messages(DM) if m.text.startswith("Talk to me")]
    )
    assert "/new" in help_reply[0].text
    await slack.command("stop", channel=CHANNEL)
    await slack.reply(CHANNEL, "Nothing is running.")
    commands = [(m.text, m.is_direct, m.addressed) for m in slack.handled]
    assert commands == [
        ("/topic trip", True, True),
        ("/topics", True, True),
        ("/help", True, True),
        ("/stop", False, True),
    ]


# -- files, steering, rate limits ------------------------------------------------------


@MODES
async def test_images_are_downloaded_and_other_files_noted(start: Start, mode: str) -> None:
    provider = ScriptedProvider("main")
    slack = await start(mode, provider=provider)
    fake = slack.fake
    image = fake.add_file("cat.png", b"\x89PNG fake", mimetype="image/png")
    doc = fake.add_file("notes.txt", b"some notes", mimetype="text/plain")
    await slack.deliver(fake.message_event(DM, USER, "look at these", files=[image, doc]))
    await slack.reply(DM, "ok")
    user = [e for e in provider.requests[0].messages if isinstance(e, UserEntry)][-1]
    assert [(i.media_type, i.data_base64) for i in user.images] == [
        ("image/png", base64.b64encode(b"\x89PNG fake").decode())
    ]
    assert user.text == "look at these\n[attachment: notes.txt (text/plain, 10 bytes)]"
    assert fake.file_downloads == [image["id"]]


async def test_steered_message_gets_an_eyes_reaction(start: Start) -> None:
    provider = ScriptedProvider("main")
    gate = Gate()
    provider.script(Text("working"), gate, Text(" done"))
    provider.script(Text("second answer"))
    slack = await start(provider=provider)
    fake = slack.fake
    await slack.deliver(fake.message_event(DM, USER, "start something"))
    await asyncio.wait_for(gate.reached.wait(), TIMEOUT)
    steer = fake.message_event(DM, USER, "and also this")
    await slack.deliver(steer)
    reacted = await fake.wait_for(lambda: fake.messages[(DM, steer["ts"])].reactions)
    assert reacted == (("eyes", fake.bot_user_id),)
    # A second reaction on the same message is not an error.
    target = ChatTarget(platform="slack", chat_id=DM)
    await slack.adapter.react(target, f"{DM}:{steer['ts']}", "\N{EYES}")
    gate.release()
    await slack.reply(DM, "working done")
    await slack.reply(DM, "second answer")


async def test_a_final_429_is_counted_and_retried(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    # slack-sdk waits Retry-After plus random() seconds: pin the jitter to zero.
    monkeypatch.setattr("slack_sdk.http_retry.builtin_async_handlers.random.random", lambda: 0.0)
    slack = await start()
    fake = slack.fake
    fake.fail_next("chat.postMessage", retry_after=0, times=2)
    await slack.deliver(fake.message_event(DM, USER, "despite the limits"))
    await slack.reply(DM, "despite the limits")
    # One 429 retried inside the client, the second raised to the budget and counted.
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [429, 429, 200]
    assert slack.count("rate_limited") == 1


async def test_errors_are_converted(start: Start) -> None:
    slack = await start()
    fake = slack.fake
    target = ChatTarget(platform="slack", chat_id=DM)
    fake.fail_next("chat.postMessage", "msg_too_long")
    with pytest.raises(MessageTooLong):
        await slack.adapter.send(target, "x", markup=True)
    fake.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(RateLimited) as limited:
        await slack.adapter.send(target, "x", markup=True)
    assert limited.value.retry_after == 7.0
    # A long Retry-After is not slept on inside the client: the budget handles it.
    assert [c.status for c in fake.calls_to("chat.postMessage")] == [200, 429]


# -- connection state and credentials ---------------------------------------------------


async def test_socket_reconnects_on_disconnect(start: Start) -> None:
    slack = await start()
    fake = slack.fake
    assert [c.token for c in fake.calls_to("apps.connections.open")] == [fake.app_token]
    assert list(slack.adapter.state_history) == ["starting", "connected"]
    await fake.disconnect_socket()
    await until(lambda: list(slack.adapter.state_history)[-2:] == ["reconnecting", "connected"])
    assert fake.socket_connections == 2
    await slack.deliver(fake.message_event(DM, USER, "after the refresh"))
    await slack.reply(DM, "after the refresh")


async def test_socket_closed_by_slack_reconnects(start: Start) -> None:
    slack = await start()
    await slack.fake.disconnect_socket(message=False, close=True)
    await slack.fake.wait_for(lambda: slack.fake.socket_connections == 2 and slack.fake.connected)
    await slack.deliver(slack.fake.message_event(DM, USER, "still connected"))
    await slack.reply(DM, "still connected")
    assert slack.adapter.state == "connected"


async def test_a_socket_that_cannot_reconnect_is_restarted(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_socket, "WATCH_INTERVAL", 0.01)
    monkeypatch.setattr(slack_socket, "RECONNECT_GIVE_UP", 0.05)
    slack = await start()
    slack.fake.fail_next("apps.connections.open", "internal_error", times=1000)
    await slack.fake.disconnect_socket(message=False, close=True)
    entry = slack.gateway.supervised["slack"]
    await until(lambda: entry.attempts >= 1)  # run() gave up; the supervisor retries
    assert "reconnecting" in slack.adapter.state_history
    assert entry.failed is None
    assert slack.adapter.state != "connected"


@pytest.mark.parametrize(
    ("token", "names"),
    [
        ("bot_token", ("SLACK_BOT_TOKEN", "adapters.slack.bot_token")),
        ("app_token", ("SLACK_APP_TOKEN", "adapters.slack.app_token")),
    ],
)
async def test_refused_credentials_fail_for_good(
    start: Start, token: str, names: tuple[str, ...]
) -> None:
    slack = await start(
        **{token: "xoxb-wrong" if token == "bot_token" else "xapp-wrong"}, connect=False
    )
    failed = await until(lambda: slack.gateway.supervised["slack"].failed)
    assert all(name in failed for name in names)
    ready, body = slack.gateway.readiness()
    assert not ready
    assert body["adapters"]["slack"]["state"] == "failed"
    assert not slack.fake.connected


# -- HTTP mode -------------------------------------------------------------------------


async def test_http_verification_and_signatures(start: Start) -> None:
    slack = await start("http")
    fake = slack.fake
    status, body = await fake.deliver_url_verification(
        slack.url, signing_secret=SECRET, challenge="c1"
    )
    assert (status, json.loads(body)) == (200, {"challenge": "c1"})  # Slack accepts either form
    event = fake.message_event(DM, USER, "forged")
    bad = await fake.deliver_http(slack.url, event, signing_secret=SECRET, bad_signature=True)
    stale = await fake.deliver_http(
        slack.url, event, signing_secret=SECRET, timestamp=int(time.time()) - 301
    )
    assert (bad[0], stale[0]) == (401, 401)
    await slack.idle()
    assert slack.handled == []
    assert slack.count("runs") == 0
    assert not fake.bot_messages(DM)


async def test_http_events_are_acknowledged_before_the_run_ends(start: Start) -> None:
    provider = ScriptedProvider("main")
    gate = Gate()
    provider.script(Text("slow"), gate, Text(" answer"))
    slack = await start("http", provider=provider)
    began = time.monotonic()
    await slack.deliver(slack.fake.message_event(DM, USER, "take your time"))
    assert time.monotonic() - began < 3.0
    await asyncio.wait_for(gate.reached.wait(), TIMEOUT)
    assert not gate.opened.is_set()  # acknowledged while the run is still held open
    gate.release()
    await slack.reply(DM, "slow answer")


# -- native streams against the fake (no gateway) -------------------------------------


@pytest.fixture
def stream_target(fake: FakeSlack) -> ChatTarget:
    extra = {"user": USER, "team": fake.team_id, "assistant": "1"}
    return ChatTarget(platform="slack", chat_id=DM, thread_id=fake.next_ts(), extra=extra)


def fmt(limit: int) -> TextFormat:
    return dataclasses.replace(SlackAdapter.text_format, limit=limit)


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


async def test_stream_hands_over_a_reply_that_outgrows_one_message(
    fake: FakeSlack, client: AsyncWebClient, stream_target: ChatTarget
) -> None:
    results: list[bool] = []
    stream = SlackStream(client, stream_target, fmt(40), on_result=results.append)
    assert await stream.update("word0 word1 word2")
    assert await stream.update("word0 word1 word2 word3 word4")
    assert not await stream.update("word0 word1 word2 word3 word4 " + "x" * 20)
    # The renderer takes over by chat.update from here: chunking lives there only.
    [(sent, shown)] = stream.handover()
    [message] = fake.bot_messages(DM, stream_target.thread_id)
    assert (sent.message_id, shown) == (message.ts, "word0 word1 word2 word3 word4")
    assert (message.text, message.streaming) == (shown, False)
    assert results == [True]


async def test_stream_gives_way_when_a_tail_went_away(
    fake: FakeSlack, client: AsyncWebClient, stream_target: ChatTarget
) -> None:
    stream = SlackStream(client, stream_target, fmt(1000), on_result=lambda ok: None)
    assert await stream.update("Let me check")
    assert await stream.update("Let me check\n\n_using search..._")
    assert not await stream.update("Let me check\n\nThe answer")  # the status went away
    assert not await stream.finish("Let me check\n\nThe answer is 4.")
    [(_, shown)] = stream.handover()
    assert shown == "Let me check\n\n_using search..._"
    (message,) = fake.bot_messages(DM, stream_target.thread_id)
    assert (message.text, message.streaming) == (shown, False)
    assert [c.method for c in fake.calls] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]


async def test_stream_gives_way_when_streams_are_refused(
    fake: FakeSlack, client: AsyncWebClient, stream_target: ChatTarget
) -> None:
    fake.supports_streaming = False
    results: list[bool] = []
    stream = SlackStream(client, stream_target, fmt(1000), on_result=results.append)
    assert not await stream.update("Hel")
    assert not await stream.finish("Hello **world**")
    assert stream.handover() == []
    assert fake.bot_messages(DM, stream_target.thread_id) == []
    assert results == [False]


async def test_stream_finished_at_once_uses_one_stream(
    fake: FakeSlack, client: AsyncWebClient, stream_target: ChatTarget
) -> None:
    stream = SlackStream(client, stream_target, fmt(1000), on_result=lambda ok: None)
    await stream.finish("all at once")
    await stream.finish("all at once")  # a retried finish sends nothing twice
    (message,) = fake.bot_messages(DM, stream_target.thread_id)
    assert (message.text, message.streaming) == ("all at once", False)
    assert [c.method for c in fake.calls] == ["chat.startStream", "chat.stopStream"]


async def test_delete_removes_the_bots_message(start: Start) -> None:
    slack = await start()
    target = ChatTarget(platform="slack", chat_id=DM)
    await slack.adapter.send(target, "kept", markup=True)
    spilled = await slack.adapter.send(target, "spilled", markup=True)
    await slack.adapter.delete(spilled)
    assert [m.text for m in slack.fake.bot_messages(DM) if m.text != "kept"] == []
    assert slack.fake.deleted == [(DM, spilled.message_id)]


async def test_sent_and_streamed_replies_render_the_same(
    start: Start, client: AsyncWebClient, stream_target: ChatTarget
) -> None:
    slack = await start()
    md = "**Plan**\n\n| step | who |\n|---|---|\n| build | ann |"
    shown = SlackAdapter.text_format.render(md)
    assert "```" in shown  # the table is drawn as a grid, as on every platform
    target = ChatTarget(platform="slack", chat_id=DM)
    sent = await slack.adapter.send(target, shown, markup=True)
    stream = SlackStream(client, stream_target, SlackAdapter.text_format, on_result=lambda ok: None)
    assert await stream.finish(md)
    posted = {m.ts: m for m in slack.fake.bot_messages(DM)}[sent.message_id]
    [streamed] = slack.fake.bot_messages(DM, stream_target.thread_id)
    # Slack renders a markdown block as it renders a stream: the same markdown in both.
    assert posted.blocks == ({"type": "markdown", "text": streamed.text},)
    assert posted.text == to_slack_mrkdwn(shown)  # what notifications show
