"""OpenAIProvider (and the shared retry logic) through real httpx against the fake server."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from runtime.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderModelError,
    ProviderRequestError,
    ProviderStreamError,
    ProviderUnavailableError,
)
from runtime.history import (
    AssistantEntry,
    Image,
    Speaker,
    SummaryEntry,
    ToolCall,
    ToolResultEntry,
    UserEntry,
)
from runtime.prompts import SUMMARY_PREFIX
from runtime.providers.base import (
    ModelRequest,
    ProviderEvent,
    RetryNotice,
    TextChunk,
    ThinkingChunk,
    ToolCallReady,
    ToolCallStarted,
    UsageReport,
)
from runtime.providers.body import StreamBroken
from runtime.providers.http_retry import RetryPolicy
from runtime.providers.openai import OpenAIProvider, _Parser
from runtime.tools import ToolSpec
from tests.fakes.llm_server import (
    Call,
    FakeLLMServer,
    HttpError,
    Raw,
    Reasoning,
    Script,
    StreamError,
    Text,
    Usage,
)

API_KEY = "sk-test-secret-key"


@pytest.fixture
async def provider(llm_server: FakeLLMServer) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(
        "openai",
        base_url=f"{llm_server.url}/v1",
        api_key=API_KEY,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    yield p
    await p.aclose()


def ask(text: str = "hi") -> ModelRequest:
    return ModelRequest(model="gpt-test", system="", messages=(UserEntry(text=text),))


async def collect(provider: OpenAIProvider, request: ModelRequest) -> list[ProviderEvent]:
    return [event async for event in provider.stream(request)]


async def drain(stream: AsyncIterator[ProviderEvent], into: list[ProviderEvent]) -> None:
    """Collect into a list the caller keeps, so events before an error stay visible."""
    async for event in stream:
        into.append(event)


async def test_streams_text_and_usage(provider: OpenAIProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(steps=[Text("Hel"), Text("lo"), Usage(10, 2)]))

    events = await collect(provider, ask())

    assert events == [
        TextChunk(text="Hel"),
        TextChunk(text="lo"),
        UsageReport(prompt_tokens=10, completion_tokens=2),
    ]


async def test_reasoning_from_either_field(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(
        Script(
            steps=[
                Reasoning("Let me ", openai_field="reasoning_content"),
                Reasoning("think.", openai_field="reasoning"),
                Text("Done."),
                Usage(3, 4),
            ]
        )
    )

    events = await collect(provider, ask())

    assert events[:3] == [
        ThinkingChunk(text="Let me "),
        ThinkingChunk(text="think."),
        TextChunk(text="Done."),
    ]


async def test_parallel_tool_calls_assembled_from_fragments(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(
        Script(
            steps=[
                Text("Checking."),
                Call("get_time", '{"timezone": "Europe/Paris"}', id="call_a", fragments=4),
                Call("search", '{"q": "weather"}', id="call_b", fragments=3),
                Call("ping", "", id="call_c"),
                Usage(20, 9),
            ]
        )
    )

    events = await collect(provider, ask())

    assert events == [
        TextChunk(text="Checking."),
        ToolCallStarted(index=0, name="get_time"),
        ToolCallStarted(index=1, name="search"),
        ToolCallStarted(index=2, name="ping"),
        ToolCallReady(
            index=0, id="call_a", name="get_time", arguments='{"timezone": "Europe/Paris"}'
        ),
        ToolCallReady(index=1, id="call_b", name="search", arguments='{"q": "weather"}'),
        ToolCallReady(index=2, id="call_c", name="ping", arguments="{}"),
        UsageReport(prompt_tokens=20, completion_tokens=9),
    ]


async def test_request_body_is_what_the_api_expects(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    history = (
        SummaryEntry(text="we met"),
        UserEntry(
            text="what is this?",
            speaker=Speaker(name="Ann", id="telegram:user:1"),
            images=(Image(media_type="image/png", data_base64="iVBORw0K"),),
        ),
        AssistantEntry(
            text="Let me look.",
            tool_calls=(ToolCall(id="call_1", name="get_time", arguments='{"timezone":"UTC"}'),),
        ),
        ToolResultEntry(call_id="call_1", name="get_time", content="12:00", is_error=False),
        AssistantEntry(text="It is noon", interrupted=True),
        UserEntry(text="thanks"),
    )
    tool = ToolSpec(
        name="get_time",
        description="Current time.",
        parameters={"type": "object", "properties": {"timezone": {"type": "string"}}},
    )
    request = ModelRequest(
        model="gpt-test", system="Be brief.", messages=history, tools=(tool,), max_tokens=321
    )

    await collect(provider, request)

    (recorded,) = await llm_server.wait_for_requests(1)
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorded.json == {
        "model": "gpt-test",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 321,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "description": "Current time.",
                    "parameters": {
                        "type": "object",
                        "properties": {"timezone": {"type": "string"}},
                    },
                },
            }
        ],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": SUMMARY_PREFIX + "we met"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "[Ann] what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"timezone":"UTC"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
            {"role": "assistant", "content": "It is noon\n[reply interrupted]"},
            {"role": "user", "content": "thanks"},
        ],
    }


async def test_empty_queue_echoes_the_last_user_message(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    events = await collect(provider, ask("ping me"))

    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert text == "echo: ping me"
    assert isinstance(events[-1], UsageReport)


async def test_429_is_retried_after_retry_after(
    provider: OpenAIProvider, llm_server: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    llm_server.script(Script(error=HttpError(429, retry_after=0)), Script(steps=[Text("ok")]))

    with caplog.at_level(logging.WARNING, logger="runtime.providers.http_retry"):
        events = await collect(provider, ask())

    assert events[:2] == [
        RetryNotice(attempt=1, delay=0.0, cause="rate_limited"),
        TextChunk(text="ok"),
    ]
    assert len(llm_server.requests) == 2
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "attempt 1 of 4" in record.getMessage()
    assert "HTTP 429" in record.getMessage()
    assert "retrying in 0.00s" in record.getMessage()
    assert API_KEY not in caplog.text


async def test_retry_after_is_honoured_up_to_the_cap(llm_server: FakeLLMServer) -> None:
    provider = OpenAIProvider(
        "openai", base_url=f"{llm_server.url}/v1", api_key=API_KEY, backoff_base=0.001
    )
    llm_server.script(Script(error=HttpError(429, retry_after=0.2)), Script(steps=[Text("ok")]))
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await collect(provider, ask())
        assert loop.time() - started >= 0.2
    finally:
        await provider.aclose()


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=5, backoff_base=1.0, backoff_max=3.0)

    assert 0.5 <= policy.delay(1) <= 1.0
    assert 1.0 <= policy.delay(2) <= 2.0
    assert 1.5 <= policy.delay(3) <= 3.0
    assert 1.5 <= policy.delay(9) <= 3.0
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert policy.delay(1, retry_after=60) == 3.0


async def test_5xx_until_retries_run_out(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(*[Script(error=HttpError(500)) for _ in range(4)], Script())

    with pytest.raises(ProviderUnavailableError, match=r"HTTP 500.*after 4 attempts"):
        await collect(provider, ask())

    assert len(llm_server.requests) == 4
    assert llm_server.pending_scripts == 1


async def test_connect_error_is_retried_then_fails(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAIProvider(
        "local",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=API_KEY,
        max_retries=2,
        backoff_base=0.01,
    )
    try:
        with (
            caplog.at_level(logging.WARNING, logger="runtime.providers.http_retry"),
            pytest.raises(ProviderUnavailableError) as info,
        ):
            await collect(provider, ask())
    finally:
        await provider.aclose()

    assert "providers.local.base_url" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert [r.getMessage().split("(attempt ")[1] for r in caplog.records] == ["1 of 3)", "2 of 3)"]
    assert all(r.getMessage().startswith("Provider 'local' stream failed") for r in caplog.records)


async def test_401_names_the_setting_to_fix(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(error=HttpError(401)))

    with pytest.raises(ProviderAuthError) as info:
        await collect(provider, ask())

    assert str(info.value) == (
        "The provider 'openai' refused the API key (HTTP 401); check providers.openai.api_key."
    )
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize("status", [404, 400])
async def test_unknown_model(
    provider: OpenAIProvider, llm_server: FakeLLMServer, status: int
) -> None:
    llm_server.script(Script(error=HttpError(status, code="model_not_found")))

    with pytest.raises(ProviderModelError, match="does not know the model 'gpt-test'"):
        await collect(provider, ask())

    assert len(llm_server.requests) == 1


async def test_other_4xx_carries_the_server_message(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(error=HttpError(400, message="messages: too many images")))

    with pytest.raises(ProviderError) as info:
        await collect(provider, ask())

    assert type(info.value) is ProviderRequestError
    assert "HTTP 400" in str(info.value)
    assert "messages: too many images" in str(info.value)


async def test_drop_after_first_token_keeps_what_was_streamed(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("par"), Text("tial")], drop_after=1))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderStreamError, match="broke off after the reply started"):
        await drain(provider.stream(ask()), received)

    assert received == [TextChunk(text="par")]
    assert len(llm_server.requests) == 1


async def test_drop_before_first_token_is_retried(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("lost")], drop_after=0), Script(steps=[Text("ok")]))

    events = await collect(provider, ask())

    assert isinstance(events[0], RetryNotice)
    assert events[0].cause == "unreachable"
    assert events[1] == TextChunk(text="ok")
    assert len(llm_server.requests) == 2


async def test_stream_without_done_is_a_stream_error(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("half")], terminate=False))

    with pytest.raises(ProviderStreamError, match=r"without \[DONE\]"):
        await collect(provider, ask())


async def test_malformed_json_is_a_stream_error(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("a"), Raw("data: {oops\n\n")]))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderStreamError, match="malformed JSON"):
        await drain(provider.stream(ask()), received)

    assert received == [TextChunk(text="a")]


async def test_in_stream_error_after_text(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("a"), StreamError("server_error", "boom")]))

    with pytest.raises(ProviderStreamError, match="boom"):
        await collect(provider, ask())


async def test_read_timeout_before_first_token_is_retried(llm_server: FakeLLMServer) -> None:
    provider = OpenAIProvider(
        "openai",
        base_url=f"{llm_server.url}/v1",
        api_key=API_KEY,
        read_timeout=0.1,
        backoff_base=0.01,
    )
    gate = asyncio.Event()
    llm_server.script(Script(gate=gate, error=HttpError(500)), Script(steps=[Text("fast")]))
    try:
        events = await collect(provider, ask())
    finally:
        gate.set()
        await provider.aclose()

    assert isinstance(events[0], RetryNotice)
    assert events[0].cause == "unreachable"  # no answer within the read timeout
    assert events[1] == TextChunk(text="fast")
    assert len(llm_server.requests) == 2


async def test_gate_holds_the_stream_open(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    gate = asyncio.Event()
    llm_server.script(Script(steps=[Text("first")], gate=gate))
    stream = provider.stream(ask())

    try:
        assert await asyncio.wait_for(anext(stream), 5) == TextChunk(text="first")
        pending = asyncio.ensure_future(anext(stream))
        done, _ = await asyncio.wait({pending}, timeout=0.05)
        assert not done
        gate.set()
        assert isinstance(await asyncio.wait_for(pending, 5), UsageReport)
        assert [event async for event in stream] == []
    finally:
        gate.set()
        await stream.aclose()


async def test_client_passed_in_is_not_closed(llm_server: FakeLLMServer) -> None:
    async with httpx.AsyncClient() as client:
        provider = OpenAIProvider(
            "openai", base_url=f"{llm_server.url}/v1", api_key=API_KEY, client=client
        )
        events = await collect(provider, ask("shared"))
        await provider.aclose()

        assert not client.is_closed
        assert TextChunk(text="shared") in events


async def test_owned_client_is_closed(provider: OpenAIProvider) -> None:
    await provider.aclose()

    with pytest.raises(RuntimeError):
        await collect(provider, ask())


async def test_fake_refuses_a_tool_call_left_unanswered(
    provider: OpenAIProvider, llm_server: FakeLLMServer
) -> None:
    history = (
        UserEntry(text="time?"),
        AssistantEntry(tool_calls=(ToolCall(id="call_9", name="get_time", arguments="{}"),)),
        UserEntry(text="never mind"),
    )
    llm_server.script(Script(steps=[Text("unused")]))

    with pytest.raises(ProviderError, match="did not have response messages: call_9"):
        await collect(provider, ModelRequest(model="gpt-test", system="", messages=history))

    assert llm_server.pending_scripts == 1


async def test_sse_split_anywhere_and_crlf_lines_parse_the_same() -> None:
    body = (
        'data: {"choices":[{"index":0,"delta":{"content":"hé"}}]}\r\n\r\n'
        ": keep-alive\r\n\r\n"
        'data: {"choices":[{"index":0,"delta":{"content":"llo"}}]}\r\n\r\n'
        "data: [DONE]\r\n\r\n"
    ).encode()
    for size in (1, 2, 3, 7, len(body)):
        parser = _Parser()
        events: list[ProviderEvent] = []
        for start in range(0, len(body), size):
            events.extend(parser.feed(body[start : start + size]))
        events.extend(parser.finish())
        assert events == [TextChunk(text="h\u00e9"), TextChunk(text="llo")], size


async def test_a_compressed_stream_is_decoded() -> None:
    body = (
        b'data: {"choices":[{"index":0,"delta":{"content":"zipped"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
        b"data: [DONE]\n\n"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, content=gzip.compress(body))

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = OpenAIProvider("openai", base_url="http://model.test/v1", api_key="", client=client)
    try:
        events = await collect(provider, ask())
    finally:
        await client.aclose()

    assert events == [
        TextChunk(text="zipped"),
        UsageReport(prompt_tokens=3, completion_tokens=1),
    ]


@pytest.mark.parametrize("data", [b'{"a": 1} trailing', b"[1, 2]", b"\xff{}", b'{"a": '], ids=str)
def test_payloads_that_are_not_one_json_object_break_the_stream(data: bytes) -> None:
    parser = _Parser()
    with pytest.raises(StreamBroken):
        parser.feed(b"data: " + data + b"\n\n")
