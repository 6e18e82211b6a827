"""Honest model errors: one typed error per cause, each with its own user sentence and
an operator hint naming the setting in use; retries announced; the chat shows both
(the hint only in the web chat), through real httpx against the fake LLM server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.base import ChatTarget, InboundMessage
from gateway.config_loader import load_config
from gateway.delivery import DeliveryOptions
from gateway.pipeline import Pipeline
from gateway.policy import AdapterPolicy
from gateway.wiring import build_provider
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentRegistry, AgentSpec
from runtime.errors import (
    ProviderAuthError,
    ProviderContextError,
    ProviderError,
    ProviderModelError,
    ProviderRateLimitedError,
    ProviderRequestError,
    ProviderServerError,
    ProviderUnreachableError,
)
from runtime.events import Done, ModelRetrying, TextStart
from runtime.history import Speaker, UserEntry
from runtime.messages import UserMessage
from runtime.providers.base import ModelRequest
from runtime.providers.openai import OpenAIProvider
from runtime.tools import builtin_tools
from tests.fakes.llm_server import FakeLLMServer, HttpError, Script, Text
from tests.fakes.memory_adapter import MemoryAdapter

REPO = Path(__file__).resolve().parents[1]
ASK = ModelRequest(model="gpt-test", system="", messages=(UserEntry(text="hi"),))


def env_provider(
    base_url: str, *, max_retries: int = 3, backoff_max: float = 0.01
) -> OpenAIProvider:
    """A provider whose key came from the environment, as the default config's does."""
    return OpenAIProvider(
        "default",
        base_url=base_url,
        api_key="sk-secret",
        api_key_source="OPENAI_API_KEY",
        max_retries=max_retries,
        backoff_base=0.001,
        backoff_max=backoff_max,
    )


async def failure(provider: OpenAIProvider) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        async for _ in provider.stream(ASK):
            pass
    return info.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("errors", "expected", "hint_names"),
    [
        ([HttpError(401)], ProviderAuthError, "OPENAI_API_KEY"),
        ([HttpError(404)], ProviderModelError, "HTTP 404"),
        ([HttpError(400, code="context_length_exceeded")], ProviderContextError, "compact"),
        ([HttpError(400, message="bad image")], ProviderRequestError, "bad image"),
        ([HttpError(429)] * 4, ProviderRateLimitedError, "OPENAI_API_KEY"),
        ([HttpError(503)] * 4, ProviderServerError, "HTTP 503"),
    ],
)
async def test_each_cause_is_its_own_error_with_a_hint(
    llm_server: FakeLLMServer,
    errors: list[HttpError],
    expected: type[ProviderError],
    hint_names: str,
) -> None:
    llm_server.script(*[Script(error=e) for e in errors])
    provider = env_provider(f"{llm_server.url}/v1")
    try:
        error = await failure(provider)
    finally:
        await provider.aclose()

    assert type(error) is expected
    assert hint_names in error.hint
    assert "providers.default.api_key" not in error.hint  # the key came from the env
    assert "sk-secret" not in f"{error} {error.hint} {error.user_message}"
    assert error.user_message.endswith(".")
    assert len(error.user_message) < 100  # one short sentence
    assert len(llm_server.requests) == len(errors)


async def test_user_sentences_differ_by_cause(llm_server: FakeLLMServer) -> None:
    sentences = set()
    for error in (HttpError(401), HttpError(404), HttpError(400)):
        llm_server.script(Script(error=error))
        provider = env_provider(f"{llm_server.url}/v1")
        sentences.add((await failure(provider)).user_message)
        await provider.aclose()
    provider = env_provider(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    sentences.add((await failure(provider)).user_message)
    await provider.aclose()

    assert len(sentences) == 4
    assert not any("send your message again" in s for s in sentences)  # it would not help


async def test_unreachable_server_names_the_url_to_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    provider = env_provider(url, max_retries=1)
    try:
        error = await failure(provider)
    finally:
        await provider.aclose()

    assert type(error) is ProviderUnreachableError
    assert url in error.hint
    assert "providers.default.base_url" in error.hint
    assert "ConnectError" in str(error)


async def test_key_written_in_the_file_is_named_by_its_path(llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(401)))
    provider = OpenAIProvider("work", base_url=f"{llm_server.url}/v1", api_key="sk-x")
    try:
        error = await failure(provider)
    finally:
        await provider.aclose()

    assert "providers.work.api_key" in error.hint


def runtime_over(provider: OpenAIProvider) -> AgentRuntime:
    spec = AgentSpec(name="bot", provider=provider.name, model="gpt-test")
    registry = AgentRegistry([spec], {provider.name: provider}, builtin_tools())
    return AgentRuntime(registry, storage=None)


def message(text: str) -> UserMessage:
    return UserMessage(text=text, speaker=Speaker(name="Ann", id="test:user:ann"))


async def test_done_carries_the_sentence_and_the_hint(llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(401)))
    provider = env_provider(f"{llm_server.url}/v1")
    runtime = runtime_over(provider)
    try:
        sub = await runtime.submit("bot", "test:user:ann", message("hi"))
        done = await asyncio.wait_for(sub.run.wait(), 5)
    finally:
        await runtime.shutdown(grace=1)
        await provider.aclose()

    assert done == Done(
        reason="error",
        error=ProviderAuthError.user_sentence,
        error_hint=done.error_hint,
    )
    assert done.error_hint is not None
    assert "OPENAI_API_KEY" in done.error_hint


async def test_a_retried_429_is_announced_before_the_reply(llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(429, retry_after=0)), Script(steps=[Text("ok")]))
    provider = env_provider(f"{llm_server.url}/v1")
    runtime = runtime_over(provider)
    try:
        sub = await runtime.submit("bot", "test:user:ann", message("hi"))
        events = await asyncio.wait_for(_events(sub.run.events()), 5)
    finally:
        await runtime.shutdown(grace=1)
        await provider.aclose()

    kinds = [type(e) for e in events]
    assert kinds.index(ModelRetrying) < kinds.index(TextStart)
    assert events[kinds.index(ModelRetrying)] == ModelRetrying(
        attempt=1, delay=0.0, cause="rate_limited"
    )
    assert events[-1] == Done(reason="text", text="ok")


async def _events(stream: AsyncIterator[object]) -> list[object]:
    return [event async for event in stream]


@dataclass(kw_only=True, slots=True)
class Chat:
    adapter: MemoryAdapter
    server: FakeLLMServer

    async def say(self, text: str) -> None:
        platform = self.adapter.name
        await self.adapter.deliver(
            InboundMessage(
                platform=platform,
                message_id=f"m-{text}",
                text=text,
                user_id="42",
                user_name="Ann",
                scope=f"{platform}:user:42",
                target=ChatTarget(platform=platform, chat_id="dm42"),
                is_direct=True,
                addressed=True,
            )
        )


@asynccontextmanager
async def chat_on(platform: str, server: FakeLLMServer) -> AsyncIterator[Chat]:
    """The real pipeline and renderer, on an in-memory platform called ``platform``."""
    provider = env_provider(f"{server.url}/v1", backoff_max=1.0)
    runtime = runtime_over(provider)
    adapter = MemoryAdapter(platform)
    policy = AdapterPolicy(name=platform, access="open", edit_interval=0.05)
    pipeline = Pipeline(
        runtime,
        {platform: adapter},
        {platform: policy},
        default_agent="bot",
        bindings=[],
        delivery=DeliveryOptions(typing_interval=0.2),
    )
    task = asyncio.create_task(adapter.run(pipeline))
    await adapter.connected()
    try:
        yield Chat(adapter=adapter, server=server)
    finally:
        await runtime.shutdown(grace=1)
        await pipeline.drain(grace=1)
        adapter.stop()
        await task
        await provider.aclose()


async def test_webchat_shows_the_sentence_and_the_fix(llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(401)))
    async with chat_on("webchat", llm_server) as chat:
        await chat.say("hi")
        await chat.adapter.wait_for(lambda: chat.adapter.chat("dm42"))
        await chat.adapter.wait_for(lambda: "Fix:" in chat.adapter.chat("dm42")[0])
        text = chat.adapter.chat("dm42")[0]

    sentence, fix = text.split("\n\n")
    assert sentence == ProviderAuthError.user_sentence
    assert fix.startswith("Fix: Set a valid API key in OPENAI_API_KEY")
    assert "sk-secret" not in text


async def test_other_platforms_show_only_the_sentence(llm_server: FakeLLMServer) -> None:
    llm_server.script(Script(error=HttpError(404)))
    async with chat_on("mem", llm_server) as chat:
        await chat.say("hi")
        await chat.adapter.wait_for(lambda: chat.adapter.chat("dm42"))
        await chat.adapter.wait_for(lambda: "available" in chat.adapter.chat("dm42")[0])
        text = chat.adapter.chat("dm42")[0]

    assert text == "I can't answer: the model 'gpt-test' is not available."


async def test_retrying_status_is_replaced_by_the_reply(llm_server: FakeLLMServer) -> None:
    llm_server.script(
        Script(error=HttpError(503, retry_after=0.5)), Script(steps=[Text("here you go")])
    )
    async with chat_on("mem", llm_server) as chat:
        await chat.say("hi")
        await chat.adapter.wait_for(lambda: chat.adapter.chat("dm42") == ["here you go"])
        [shown] = chat.adapter.messages.values()

    texts = [text for _, text in shown.history]
    assert texts[0] == "_The model service is having trouble; retrying\u2026_"
    assert texts[-1] == "here you go"


def test_config_records_which_variable_gave_the_key(tmp_path: Path) -> None:
    default = load_config(REPO / "config" / "gateway.toml", {"OPENAI_API_KEY": "sk-1"})
    assert default.notes.key_sources == {"default": "OPENAI_API_KEY"}

    custom = tmp_path / "gateway.toml"
    custom.write_text(
        'default_agent = "a"\n'
        '[providers.env]\nkind = "anthropic"\napi_key = "${MY_CLAUDE_KEY}"\n'
        '[providers.file]\nkind = "openai"\napi_key = "sk-in-file"\n'
        '[agents.a]\nprovider = "env"\nmodel = "m"\n'
    )
    config = load_config(custom, {"MY_CLAUDE_KEY": "sk-2"})
    assert config.notes.key_sources == {"env": "MY_CLAUDE_KEY"}


async def test_the_wired_provider_names_the_variable() -> None:
    config = load_config(REPO / "config" / "gateway.toml", {"OPENAI_API_KEY": "sk-1"})
    source = config.notes.key_sources.get("default")
    provider = build_provider("default", config.providers["default"], api_key_source=source)
    try:
        assert isinstance(provider, OpenAIProvider)
        assert provider.api_key_source == "OPENAI_API_KEY"
    finally:
        await provider.aclose()
