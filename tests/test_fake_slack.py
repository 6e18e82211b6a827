"""The fake Slack driven by the real slack_sdk and slack_bolt clients."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import TEXT_LIMIT, FakeSlack

DM = "D0DIRECT01"
CHANNEL = "C0GENERAL1"
USER = "U0HUMAN001"
SECRET = "test-signing-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    try:
        yield slack
    finally:
        await slack.stop()


@pytest.fixture
def client(fake: FakeSlack) -> AsyncWebClient:
    # Without a session argument the client opens and closes one per call.
    return AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)


@dataclass
class _Bolt:
    app: AsyncApp
    handler: AsyncSocketModeHandler

    async def connect(self) -> None:
        # bolt's Socket Mode handler methods carry no annotations.
        await self.handler.connect_async()  # type: ignore[no-untyped-call]


@pytest.fixture
async def bolt(fake: FakeSlack, client: AsyncWebClient) -> AsyncIterator[_Bolt]:
    """A bolt app with a Socket Mode handler (not yet connected), closed after the test."""
    app = AsyncApp(client=client)
    handler = AsyncSocketModeHandler(app, fake.app_token, ping_interval=1)
    try:
        yield _Bolt(app=app, handler=handler)
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


async def _slack_error(call: Awaitable[object]) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# -- Web API ---------------------------------------------------------------------------


async def test_auth_users_and_conversations(fake: FakeSlack, client: AsyncWebClient) -> None:
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == (
        fake.bot_user_id,
        fake.bot_id,
        fake.team_id,
    )
    assert auth["url"] == "https://fake-team.slack.com/"
    fake.record_event(fake.message_event(DM, USER, "hi"))
    assert (await client.users_info(user=USER))["user"]["id"] == USER
    assert (await client.users_info(user=fake.bot_user_id))["user"]["is_bot"] is True
    info = (await client.conversations_info(channel=DM))["channel"]
    assert (info["is_im"], info["user"]) == (True, USER)
    assert (await _slack_error(client.users_info(user="U0NOBODY"))).response[
        "error"
    ] == "user_not_found"
    error = await _slack_error(client.conversations_info(channel="C0NOWHERE"))
    assert error.response["error"] == "channel_not_found"


async def test_post_update_react_and_replies(fake: FakeSlack, client: AsyncWebClient) -> None:
    question = fake.message_event(CHANNEL, USER, "question", channel_type="channel")
    fake.record_event(question)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*draft*"}}]
    posted = await client.chat_postMessage(
        channel=CHANNEL, thread_ts=question["ts"], text="draft", blocks=blocks
    )
    assert posted["message"]["thread_ts"] == question["ts"]
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="final answer")
    await client.reactions_add(channel=CHANNEL, timestamp=question["ts"], name="eyes")
    again = await _slack_error(
        client.reactions_add(channel=CHANNEL, timestamp=question["ts"], name="eyes")
    )
    assert again.response["error"] == "already_reacted"
    missing = await _slack_error(client.chat_update(channel=CHANNEL, ts="1.000001", text="x"))
    assert missing.response["error"] == "message_not_found"

    replies = await client.conversations_replies(channel=CHANNEL, ts=question["ts"])
    parent, reply = replies["messages"]
    assert (parent["reply_count"], parent["reactions"][0]["name"]) == (1, "eyes")
    assert (reply["text"], reply["bot_id"]) == ("final answer", fake.bot_id)
    thread = fake.transcript(CHANNEL, question["ts"])
    assert [msg.text for msg in thread] == ["question", "final answer"]
    assert (thread[1].edits, thread[1].blocks) == (1, tuple(blocks))
    assert thread[0].reactions == (("eyes", fake.bot_user_id),)


async def test_assistant_thread_methods(fake: FakeSlack, client: AsyncWebClient) -> None:
    thread_ts = fake.next_ts()
    await client.assistant_threads_setStatus(
        channel_id=DM, thread_ts=thread_ts, status="is thinking..."
    )
    await client.assistant_threads_setTitle(channel_id=DM, thread_ts=thread_ts, title="Trip")
    prompts = [{"title": "Plan", "message": "Plan a trip"}]
    await client.assistant_threads_setSuggestedPrompts(
        channel_id=DM, thread_ts=thread_ts, prompts=prompts, title="Try:"
    )
    await client.assistant_threads_setStatus(channel_id=DM, thread_ts=thread_ts, status="")
    state = fake.thread(DM, thread_ts)
    assert state.statuses == ("is thinking...", "")
    assert (state.status, state.title, state.prompts_title) == ("", "Trip", "Try:")
    assert state.suggested_prompts == tuple(prompts)
    bad = await _slack_error(
        client.assistant_threads_setSuggestedPrompts(
            channel_id=DM, thread_ts=thread_ts, prompts=[{"title": "no message"}]
        )
    )
    assert bad.response["error"] == "invalid_arguments"


async def test_native_streaming(fake: FakeSlack, client: AsyncWebClient) -> None:
    assert hasattr(client, "chat_startStream")
    parent = fake.message_event(DM, USER, "stream please")
    fake.record_event(parent)
    started = await client.chat_startStream(
        channel=DM, thread_ts=parent["ts"], markdown_text="Hel", recipient_user_id=USER
    )
    ts = started["ts"]
    await client.chat_appendStream(channel=DM, ts=ts, markdown_text="lo")
    assert fake.messages[(DM, ts)].streaming
    await client.chat_stopStream(channel=DM, ts=ts, markdown_text=" world")
    assert fake.calls_to("chat.appendStream")[0].args["markdown_text"] == "lo"
    msg = fake.messages[(DM, ts)]
    assert (msg.text, msg.streaming, msg.appends, msg.thread_ts) == (
        "Hello world",
        False,
        1,
        parent["ts"],
    )
    late = await _slack_error(client.chat_appendStream(channel=DM, ts=ts, markdown_text="!"))
    assert late.response["error"] == "message_not_in_streaming_state"

    streamer = await client.chat_stream(channel=DM, thread_ts=parent["ts"], buffer_size=4)
    await streamer.append(markdown_text="chunked ")
    await streamer.append(markdown_text="reply")
    await streamer.stop()
    assert fake.messages[(DM, str(streamer.ts))].text == "chunked reply"


async def test_streaming_can_be_switched_off(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.supports_streaming = False
    error = await _slack_error(client.chat_startStream(channel=DM, thread_ts="1.000001"))
    assert error.response["error"] == "unknown_method"
    unknown = await _slack_error(client.api_call("chat.noSuchMethod"))
    assert unknown.response["error"] == "unknown_method"


async def test_text_limit(fake: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=DM, text="x" * TEXT_LIMIT)
    error = await _slack_error(client.chat_postMessage(channel=DM, text="x" * (TEXT_LIMIT + 1)))
    assert error.response["error"] == "msg_too_long"
    assert len(fake.bot_messages(DM)) == 1


async def test_tokens_are_checked(fake: FakeSlack) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=fake.api_url)
    assert (await _slack_error(wrong.auth_test())).response["error"] == "invalid_auth"
    app_token = AsyncWebClient(token=fake.app_token, base_url=fake.api_url)
    error = await _slack_error(app_token.chat_postMessage(channel=DM, text="hi"))
    assert error.response["error"] == "not_allowed_token_type"
    bot = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
    error = await _slack_error(bot.apps_connections_open(app_token=fake.bot_token))
    assert error.response["error"] == "not_allowed_token_type"
    opened = await bot.apps_connections_open(app_token=fake.app_token)
    assert str(opened["url"]).startswith(f"ws://127.0.0.1:{fake.port}/link/?ticket=")
    assert [call.token for call in fake.calls_to("auth.test")] == ["xoxb-wrong"]


async def test_rate_limit_retry_after_is_honoured(
    fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler sleeps Retry-After plus random() seconds; pin the jitter to zero.
    monkeypatch.setattr("slack_sdk.http_retry.builtin_async_handlers.random.random", lambda: 0.0)
    client = AsyncWebClient(
        token=fake.bot_token,
        base_url=fake.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    fake.fail_next("chat.postMessage", retry_after=0)
    fake.fail_next("chat.postMessage", retry_after=1)
    await client.chat_postMessage(channel=DM, text="after the wait")
    first, second, third = fake.calls_to("chat.postMessage")
    assert [call.status for call in (first, second, third)] == [429, 429, 200]
    assert first.response == {"ok": False, "error": "ratelimited"}
    # Without a Retry-After header the handler would wait a second both times.
    assert second.at - first.at < 0.9
    assert third.at - second.at >= 1.0
    assert [msg.text for msg in fake.bot_messages(DM)] == ["after the wait"]


async def test_errors_surface_without_retry_handler(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    fake.fail_next("chat.postMessage", retry_after=7)
    limited = await _slack_error(client.chat_postMessage(channel=DM, text="hi"))
    assert (limited.response.status_code, limited.response["error"]) == (429, "ratelimited")
    assert limited.response.headers["Retry-After"] == "7"
    fake.fail_next("chat.update", "internal_error")
    failed = await _slack_error(client.chat_update(channel=DM, ts="1.000001", text="x"))
    assert (failed.response.status_code, failed.response["error"]) == (200, "internal_error")
    await client.chat_postMessage(channel=DM, text="second try")
    assert [msg.text for msg in fake.bot_messages(DM)] == ["second try"]


async def test_arguments_from_query_form_and_json_are_merged(fake: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        form = {"token": fake.bot_token, "text": "from a form", "blocks": "[]"}
        url = f"{fake.api_url}chat.postMessage?channel={DM}"
        async with session.post(url, data=form) as resp:
            assert (await resp.json())["ok"] is True
        headers = {"Authorization": f"Bearer {fake.bot_token}"}
        body = {"channel": DM, "text": "from json"}
        async with session.post(
            f"{fake.api_url}chat.postMessage", json=body, headers=headers
        ) as resp:
            assert resp.status == 200
    form_call, json_call = fake.calls_to("chat.postMessage")
    assert form_call.args == {"channel": DM, "text": "from a form", "blocks": []}
    assert (form_call.token, json_call.token) == (fake.bot_token, fake.bot_token)
    assert [msg.text for msg in fake.bot_messages(DM)] == ["from a form", "from json"]


async def test_private_file_download_needs_the_bot_token(fake: FakeSlack) -> None:
    file = fake.add_file("notes.txt", b"file body")
    event = fake.message_event(DM, USER, "see attached", files=[file])
    assert (event["subtype"], event["files"][0]["id"]) == ("file_share", file["id"])
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {fake.bot_token}"}
        async with session.get(file["url_private"], headers=headers) as resp:
            assert await resp.read() == b"file body"
        async with session.get(file["url_private_download"]) as resp:
            assert resp.status == 403
    assert fake.file_downloads == [file["id"]]


async def test_wait_for_times_out(fake: FakeSlack) -> None:
    with pytest.raises(TimeoutError, match="not met within"):
        await fake.wait_for(lambda: fake.calls_to("auth.test"), timeout=0.05)


# -- event shapes ----------------------------------------------------------------------


def test_event_builders_have_slack_shapes(fake: FakeSlack) -> None:
    root = fake.message_event(CHANNEL, USER, "root", channel_type="channel")
    fake.record_event(root)
    reply = fake.message_event(CHANNEL, "U0OTHER001", "reply", thread_ts=root["ts"])
    assert (reply["thread_ts"], reply["parent_user_id"]) == (root["ts"], USER)
    mention = fake.app_mention_event(CHANNEL, USER, "help")
    assert mention["type"] == "app_mention"
    assert "channel_type" not in mention
    assert mention["text"] == f"<@{fake.bot_user_id}> help"
    legacy = fake.bot_message_event(CHANNEL, "beep")
    assert (legacy["subtype"], legacy["bot_id"]) == ("bot_message", fake.bot_id)
    own = fake.bot_message_event(DM, "mine", subtype=None, channel_type="im")
    assert ("subtype" in own, own["user"], own["bot_id"]) == (False, fake.bot_user_id, fake.bot_id)
    started = fake.assistant_thread_started_event(DM, USER, "1700000000.000100")
    assert started["assistant_thread"] == {
        "user_id": USER,
        "context": {},
        "channel_id": DM,
        "thread_ts": "1700000000.000100",
    }
    callback = fake.event_callback(mention, event_id="Ev0SAME")
    assert (callback["type"], callback["event_id"], callback["api_app_id"]) == (
        "event_callback",
        "Ev0SAME",
        fake.app_id,
    )
    assert float(fake.next_ts()) < float(fake.next_ts())


# -- Socket Mode -----------------------------------------------------------------------


async def test_bolt_receives_message_and_replies_with_say(fake: FakeSlack, bolt: _Bolt) -> None:
    async def on_message(event: dict[str, Any], say: AsyncSay) -> None:
        await say(f"echo: {event['text']}")

    bolt.app.event("message")(on_message)
    await bolt.connect()
    envelope_id = await fake.send_event(fake.message_event(DM, USER, "hello"))
    ack = await fake.wait_for_ack(envelope_id)
    assert ack == {"envelope_id": envelope_id}
    replies = await fake.wait_for(lambda: fake.bot_messages(DM))
    assert [msg.text for msg in replies] == ["echo: hello"]
    assert [msg.text for msg in fake.transcript(DM)] == ["hello", "echo: hello"]
    assert [call.token for call in fake.calls_to("apps.connections.open")] == [fake.app_token]
    envelope = fake.envelopes[0]
    assert (envelope.type, envelope.payload["event"]["text"]) == ("events_api", "hello")


async def test_socket_disconnect_message_reconnects(fake: FakeSlack, bolt: _Bolt) -> None:
    seen: list[str] = []

    async def on_message(event: dict[str, Any]) -> None:
        seen.append(event["text"])

    bolt.app.event("message")(on_message)
    await bolt.connect()
    await fake.wait_for(lambda: fake.connected)
    await fake.disconnect_socket()
    await fake.wait_for(lambda: fake.socket_connections == 2 and fake.connected)
    assert len(fake.calls_to("apps.connections.open")) == 2
    envelope_id = await fake.send_event(fake.message_event(DM, USER, "after refresh"))
    await fake.wait_for_ack(envelope_id)
    await fake.wait_for(lambda: seen)
    assert seen == ["after refresh"]


async def test_socket_closed_by_server_reconnects(fake: FakeSlack, bolt: _Bolt) -> None:
    async def on_message() -> None:
        return None

    # bolt acks only events some listener handles.
    bolt.app.event("message")(on_message)
    await bolt.connect()
    await fake.wait_for(lambda: fake.connected)
    await fake.disconnect_socket(message=False, close=True)
    await fake.wait_for(lambda: fake.socket_connections == 2 and fake.connected)
    envelope_id = await fake.send_event(fake.message_event(DM, USER, "still there?"))
    await fake.wait_for_ack(envelope_id)


async def test_socket_retry_attempt_reaches_bolt(fake: FakeSlack, bolt: _Bolt) -> None:
    retries: list[list[str]] = []

    async def on_message(request: AsyncBoltRequest) -> None:
        # bolt mirrors the envelope's retry_attempt as HTTP mode's retry header.
        retries.append(list(request.headers.get("x-slack-retry-num", [])))

    bolt.app.event("message")(on_message)
    await bolt.connect()
    event = fake.message_event(DM, USER, "again")
    await fake.send_event(event, retry_attempt=1, retry_reason="timeout", event_id="Ev0RETRY")
    await fake.wait_for(lambda: retries)
    assert retries == [["1"]]
    assert fake.envelopes[0].payload["event_id"] == "Ev0RETRY"
    assert fake.envelopes[0].retry_attempt == 1


async def test_slash_command_over_socket(fake: FakeSlack, bolt: _Bolt) -> None:
    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(f"running {command['text']}")

    bolt.app.command("/agent")(on_command)
    await bolt.connect()
    envelope_id = await fake.send_slash_command("/agent", "status", channel=CHANNEL, user=USER)
    ack = await fake.wait_for_ack(envelope_id)
    assert ack["payload"] == {"text": "running status"}


async def test_assistant_thread_started_sets_prompts(fake: FakeSlack, bolt: _Bolt) -> None:
    assistant = AsyncAssistant()

    async def started(say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts) -> None:
        await say("How can I help?")
        await set_suggested_prompts(prompts=[{"title": "Plan", "message": "Plan my week"}])

    assistant.thread_started(started)
    bolt.app.assistant(assistant)
    await bolt.connect()
    event = fake.assistant_thread_started_event(DM, USER)
    thread_ts = event["assistant_thread"]["thread_ts"]
    await fake.send_event(event)
    prompts = await fake.wait_for(lambda: fake.thread(DM, thread_ts).suggested_prompts)
    assert prompts == ({"title": "Plan", "message": "Plan my week"},)
    assert [msg.text for msg in fake.bot_messages(DM, thread_ts)] == ["How can I help?"]


# -- HTTP mode -------------------------------------------------------------------------


@dataclass
class _Receiver:
    """An app endpoint that checks Slack signatures the way slack_bolt does."""

    url: str = ""
    requests: list[tuple[dict[str, str], str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append((dict(request.headers), body))
        if not SignatureVerifier(SECRET).is_valid_request(body, dict(request.headers)):
            return web.Response(status=401, text="invalid signature")
        if request.content_type == "application/json":
            payload = json.loads(body)
            if payload["type"] == "url_verification":
                return web.Response(text=payload["challenge"])
        return web.Response(text="")


@pytest.fixture
async def receiver() -> AsyncIterator[_Receiver]:
    endpoint = _Receiver()
    web_app = web.Application()
    web_app.router.add_post("/slack/events", endpoint.handle)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


async def test_http_delivery_is_signed(fake: FakeSlack, receiver: _Receiver) -> None:
    event = fake.app_mention_event(CHANNEL, USER, "hi")
    assert await fake.deliver_http(receiver.url, event, signing_secret=SECRET) == (200, "")
    headers, body = receiver.requests[0]
    assert json.loads(body)["event"] == event
    assert "X-Slack-Retry-Num" not in headers
    status, _ = await fake.deliver_http(
        receiver.url, event, signing_secret=SECRET, retry_num=1, event_id="Ev0SAME"
    )
    headers, body = receiver.requests[1]
    assert (status, headers["X-Slack-Retry-Num"], headers["X-Slack-Retry-Reason"]) == (
        200,
        "1",
        "http_timeout",
    )
    assert json.loads(body)["event_id"] == "Ev0SAME"
    assert [msg.text for msg in fake.transcript(CHANNEL)] == [event["text"]]


async def test_http_bad_signature_and_stale_timestamp_are_refused(
    fake: FakeSlack, receiver: _Receiver
) -> None:
    event = fake.message_event(DM, USER, "hi")
    bad = await fake.deliver_http(receiver.url, event, signing_secret=SECRET, bad_signature=True)
    stale = await fake.deliver_http(
        receiver.url, event, signing_secret=SECRET, timestamp=int(time.time()) - 600
    )
    assert (bad[0], stale[0]) == (401, 401)


async def test_http_url_verification_and_slash_command(
    fake: FakeSlack, receiver: _Receiver
) -> None:
    answer = await fake.deliver_url_verification(
        receiver.url, signing_secret=SECRET, challenge="c1"
    )
    assert answer == (200, "c1")
    status, _ = await fake.deliver_slash_command_http(
        receiver.url, "/agent", "new", channel=CHANNEL, user=USER, signing_secret=SECRET
    )
    headers, body = receiver.requests[-1]
    assert status == 200
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(body)
    assert (form["command"], form["text"], form["user_id"]) == (["/agent"], ["new"], [USER])
