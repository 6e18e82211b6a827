"""What both HTTP providers do alike, whatever their wire format: through real httpx
against the fake LLM server, which speaks the Messages and Chat Completions APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime.history import UserEntry
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import (
    ModelRequest,
    ProviderEvent,
    TextChunk,
    ThinkingChunk,
    ToolCallReady,
    ToolCallStarted,
    UsageReport,
)
from runtime.providers.openai import OpenAIProvider
from tests.fakes.llm_server import Call, FakeLLMServer, Reasoning, Script, Step, Text, Usage

HttpProvider = AnthropicProvider | OpenAIProvider


@pytest.fixture(params=["anthropic", "openai"])
async def provider(
    request: pytest.FixtureRequest, llm_server: FakeLLMServer
) -> AsyncIterator[HttpProvider]:
    p: HttpProvider
    if request.param == "anthropic":
        p = AnthropicProvider(
            "claude", base_url=llm_server.url, api_key="k", backoff_base=0.01, backoff_max=0.05
        )
    else:
        p = OpenAIProvider(
            "openai",
            base_url=f"{llm_server.url}/v1",
            api_key="k",
            backoff_base=0.01,
            backoff_max=0.05,
        )
    yield p
    await p.aclose()


async def collect(provider: HttpProvider) -> list[ProviderEvent]:
    request = ModelRequest(model="test-model", system="", messages=(UserEntry(text="hi"),))
    return [event async for event in provider.stream(request)]


async def test_sequential_calls_reuse_one_connection(
    provider: HttpProvider, llm_server: FakeLLMServer
) -> None:
    for i in range(5):
        llm_server.script(Script(steps=[Text(f"reply {i}")]))
        events = await collect(provider)
        assert events[0] == TextChunk(text=f"reply {i}")

    assert len(llm_server.requests) == 5
    assert llm_server.connections == 1


async def test_a_complete_json_reply_is_accepted(
    provider: HttpProvider, llm_server: FakeLLMServer
) -> None:
    call = Call("get_time", '{"tz": "UTC"}', id="c1")
    steps: list[Step] = [Reasoning("hmm"), Text("Checking."), call, Usage(20, 9)]
    llm_server.script(Script(steps=steps, json_reply=True))

    events = await collect(provider)

    assert events == [
        ThinkingChunk(text="hmm"),
        TextChunk(text="Checking."),
        ToolCallStarted(index=0, name="get_time"),
        ToolCallReady(index=0, id="c1", name="get_time", arguments='{"tz": "UTC"}'),
        UsageReport(prompt_tokens=20, completion_tokens=9),
    ]
    assert len(llm_server.requests) == 1  # accepted at once, not retried
