"""The offline echo provider, and the provider factory."""

from __future__ import annotations

import asyncio

import pytest

from runtime.history import AssistantEntry, Entry, Speaker, UserEntry
from runtime.prompts import COMPACT_PROMPT, TITLE_PROMPT
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import ModelRequest, ProviderEvent, TextChunk, UsageReport
from runtime.providers.echo import EchoProvider
from runtime.providers.factory import create_provider
from runtime.providers.openai import OpenAIProvider


def request(*messages: Entry, system: str = "") -> ModelRequest:
    return ModelRequest(model="echo", system=system, messages=messages)


async def collect(provider: EchoProvider, req: ModelRequest) -> list[ProviderEvent]:
    return [event async for event in provider.stream(req)]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))


async def test_echoes_user_entries_after_the_last_reply_word_by_word() -> None:
    provider = EchoProvider(word_delay=0)
    req = request(
        UserEntry(text="old question"),
        AssistantEntry(text="old answer"),
        UserEntry(text="hello  big\nworld", speaker=Speaker(name="Ann", id="x")),
        UserEntry(text="again", steered=True),
    )

    events = await collect(provider, req)

    assert events[:-1] == [
        TextChunk(text="hello  "),
        TextChunk(text="big\n"),
        TextChunk(text="world\n"),
        TextChunk(text="again"),
    ]
    reply = "hello  big\nworld\nagain"
    request_chars = len("old question") + len("old answer") + len("hello  big\nworld") + 5
    assert events[-1] == UsageReport(
        prompt_tokens=(request_chars + 3) // 4, completion_tokens=(len(reply) + 3) // 4
    )


async def test_words_are_spaced_by_word_delay() -> None:
    provider = EchoProvider(word_delay=0.03)
    loop = asyncio.get_running_loop()
    started = loop.time()

    events = await collect(provider, request(UserEntry(text="one two three")))

    assert loop.time() - started >= 0.06
    assert text_of(events) == "one two three"


async def test_title_prompt_is_answered_with_the_first_user_words() -> None:
    prompt = (
        f"{TITLE_PROMPT}\n\nUser: How do I bake sourdough bread at home?\n"
        "Assistant: Start with a lively starter."
    )

    events = await collect(EchoProvider(word_delay=0), request(UserEntry(text=prompt)))

    assert text_of(events) == "How do I bake sourdough"


async def test_compact_prompt_is_answered_with_a_summary() -> None:
    transcript = "User: " + "tell me about tides " * 20
    prompt = f"{COMPACT_PROMPT}\n\n{transcript}"

    events = await collect(EchoProvider(word_delay=0), request(UserEntry(text=prompt)))

    assert text_of(events) == "Earlier we talked about: " + transcript.strip()[:200]


async def test_nothing_to_echo_yields_only_usage() -> None:
    events = await collect(
        EchoProvider(word_delay=0), request(UserEntry(text="hi"), AssistantEntry(text="hello"))
    )

    assert len(events) == 1
    assert isinstance(events[0], UsageReport)


async def test_factory_builds_each_kind_with_its_defaults() -> None:
    echo = create_provider(
        "echo", "offline", base_url=None, api_key=None, word_delay=0.0, max_retries=2
    )
    openai = create_provider("openai", "oa", base_url=None, api_key="k", backoff_base=0.1)
    anthropic = create_provider(
        "anthropic", "an", base_url="http://127.0.0.1:9/", api_key=None, word_delay=1.0
    )
    try:
        assert isinstance(echo, EchoProvider)
        assert echo.name == "offline"
        assert echo.word_delay == 0.0
        assert isinstance(openai, OpenAIProvider)
        assert openai.base_url == "https://api.openai.com/v1"
        assert isinstance(anthropic, AnthropicProvider)
        assert anthropic.base_url == "http://127.0.0.1:9"
    finally:
        for provider in (echo, openai, anthropic):
            await provider.aclose()


def test_factory_rejects_unknown_settings() -> None:
    with pytest.raises(TypeError, match="unknown provider settings: colour"):
        create_provider("echo", "e", base_url=None, api_key=None, colour="red")
