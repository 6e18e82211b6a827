"""AnthropicProvider through real httpx against the fake Messages API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderModelError,
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
from runtime.providers.anthropic import AnthropicProvider
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
from runtime.tools import ToolSpec
from tests.fakes.llm_server import (
    Call,
    FakeLLMServer,
    HttpError,
    Reasoning,
    Script,
    StreamError,
    Text,
    Usage,
)

API_KEY = "sk-ant-test-secret"


@pytest.fixture
async def provider(llm_server: FakeLLMServer) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(
        "claude", base_url=llm_server.url, api_key=API_KEY, backoff_base=0.01, backoff_max=0.05
    )
    yield p
    await p.aclose()


def ask(text: str = "hi") -> ModelRequest:
    return ModelRequest(model="claude-test", system="", messages=(UserEntry(text=text),))


async def collect(provider: AnthropicProvider, request: ModelRequest) -> list[ProviderEvent]:
    return [event async for event in provider.stream(request)]


async def drain(stream: AsyncIterator[ProviderEvent], into: list[ProviderEvent]) -> None:
    """Collect into a list the caller keeps, so events before an error stay visible."""
    async for event in stream:
        into.append(event)


async def test_streams_text_then_one_usage_report(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("Hel"), Text("lo"), Usage(25, 7)]))

    events = await collect(provider, ask())

    assert events == [
        TextChunk(text="Hel"),
        TextChunk(text="lo"),
        UsageReport(prompt_tokens=25, completion_tokens=7),
    ]


async def test_thinking_then_text(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(steps=[Reasoning("Hmm, "), Reasoning("yes."), Text("Yes.")]))

    events = await collect(provider, ask())

    assert events[:3] == [
        ThinkingChunk(text="Hmm, "),
        ThinkingChunk(text="yes."),
        TextChunk(text="Yes."),
    ]
    assert isinstance(events[3], UsageReport)


async def test_parallel_tool_calls_assembled_from_fragments(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(
        Script(
            steps=[
                Text("Let me check."),
                Call("get_time", '{"timezone": "Asia/Tokyo"}', id="toolu_a", fragments=5),
                Call("search", '{"q": "rain"}', id="toolu_b", fragments=2),
                Usage(40, 30),
            ]
        )
    )

    events = await collect(provider, ask())

    assert events == [
        TextChunk(text="Let me check."),
        ToolCallStarted(index=0, name="get_time"),
        ToolCallStarted(index=1, name="search"),
        ToolCallReady(
            index=0, id="toolu_a", name="get_time", arguments='{"timezone": "Asia/Tokyo"}'
        ),
        ToolCallReady(index=1, id="toolu_b", name="search", arguments='{"q": "rain"}'),
        UsageReport(prompt_tokens=40, completion_tokens=30),
    ]


async def test_request_body_alternates_and_merges_user_side_entries(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    history = (
        SummaryEntry(text="we met"),
        UserEntry(
            text="what is this?",
            speaker=Speaker(name="Ann", id="discord:user:7"),
            images=(Image(media_type="image/jpeg", data_base64="/9j/4AAQ"),),
        ),
        AssistantEntry(
            text="",
            tool_calls=(
                ToolCall(id="toolu_1", name="get_time", arguments='{"timezone":"UTC"}'),
                ToolCall(id="toolu_2", name="broken", arguments="{not json"),
            ),
        ),
        ToolResultEntry(call_id="toolu_1", name="get_time", content="12:00"),
        UserEntry(text="also this", steered=True),
        ToolResultEntry(call_id="toolu_2", name="broken", content="bad args", is_error=True),
    )
    tool = ToolSpec(name="get_time", description="Current time.", parameters={"type": "object"})
    request = ModelRequest(
        model="claude-test", system="Be brief.", messages=history, tools=(tool,), max_tokens=99
    )

    await collect(provider, request)

    (recorded,) = await llm_server.wait_for_requests(1)
    assert recorded.path == "/v1/messages"
    assert recorded.headers["x-api-key"] == API_KEY
    assert recorded.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in recorded.headers
    assert recorded.json == {
        "model": "claude-test",
        "max_tokens": 99,
        "stream": True,
        "system": "Be brief.",
        "tools": [
            {"name": "get_time", "description": "Current time.", "input_schema": {"type": "object"}}
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": SUMMARY_PREFIX + "we met"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/jpeg",
                            "data": "/9j/4AAQ",
                        },
                    },
                    {"type": "text", "text": "[Ann] what is this?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_time",
                        "input": {"timezone": "UTC"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "broken", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "12:00",
                        "is_error": False,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "bad args",
                        "is_error": True,
                    },
                    {"type": "text", "text": "also this"},
                ],
            },
        ],
    }


async def test_in_stream_error_after_text_keeps_the_text(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("Par"), StreamError("overloaded_error", "Overloaded")]))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderStreamError) as info:
        await drain(provider.stream(ask()), received)

    assert received == [TextChunk(text="Par")]
    assert str(info.value).startswith("The model stream broke off after the reply started:")
    assert "overloaded_error: Overloaded" in str(info.value)
    assert len(llm_server.requests) == 1


async def test_in_stream_overload_before_any_content_is_retried(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[StreamError("overloaded_error")]), Script(steps=[Text("ok")]))

    events = await collect(provider, ask())

    assert isinstance(events[0], RetryNotice)
    assert events[0].cause == "server_error"
    assert events[1] == TextChunk(text="ok")
    assert len(llm_server.requests) == 2


async def test_in_stream_invalid_request_is_not_retried(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[StreamError("invalid_request_error", "nope")]))

    with pytest.raises(ProviderStreamError, match="before the reply started"):
        await collect(provider, ask())

    assert len(llm_server.requests) == 1


async def test_drop_mid_stream(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(steps=[Text("one"), Text("two")], drop_after=1))
    received: list[ProviderEvent] = []

    with pytest.raises(ProviderStreamError, match="broke off after the reply started"):
        await drain(provider.stream(ask()), received)

    assert received == [TextChunk(text="one")]


async def test_missing_message_stop_is_a_stream_error(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(Script(steps=[Text("half")], terminate=False))

    with pytest.raises(ProviderStreamError, match="without message_stop"):
        await collect(provider, ask())


async def test_429_then_success(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(429, retry_after=0)), Script(steps=[Text("ok")]))

    events = await collect(provider, ask())

    assert events[:2] == [
        RetryNotice(attempt=1, delay=0.0, cause="rate_limited"),
        TextChunk(text="ok"),
    ]
    assert len(llm_server.requests) == 2


async def test_overloaded_until_retries_run_out(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    llm_server.script(*[Script(error=HttpError(529)) for _ in range(4)])

    with pytest.raises(ProviderUnavailableError, match="HTTP 529: Overloaded"):
        await collect(provider, ask())

    assert len(llm_server.requests) == 4


async def test_401(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(401)))

    with pytest.raises(ProviderAuthError) as info:
        await collect(provider, ask())

    assert str(info.value) == (
        "The provider 'claude' refused the API key (HTTP 401); check providers.claude.api_key."
    )


async def test_unknown_model(provider: AnthropicProvider, llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(404)))

    with pytest.raises(ProviderModelError) as info:
        await collect(provider, ask())

    assert "'claude-test'" in str(info.value)
    assert "model: claude-test" in str(info.value)


async def test_fake_refuses_a_tool_use_left_unanswered(
    provider: AnthropicProvider, llm_server: FakeLLMServer
) -> None:
    history = (
        UserEntry(text="time?"),
        AssistantEntry(tool_calls=(ToolCall(id="toolu_9", name="get_time", arguments="{}"),)),
        UserEntry(text="never mind"),
    )

    with pytest.raises(ProviderError, match="toolu_9"):
        await collect(provider, ModelRequest(model="claude-test", system="", messages=history))
