"""Build a model provider from its config kind."""

from __future__ import annotations

from typing import Any, Literal

from runtime.providers.anthropic import DEFAULT_BASE_URL as ANTHROPIC_URL
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import ModelProvider
from runtime.providers.echo import EchoProvider
from runtime.providers.openai import DEFAULT_BASE_URL as OPENAI_URL
from runtime.providers.openai import OpenAIProvider

ProviderKind = Literal["openai", "anthropic", "echo"]

_HTTP_KNOBS = frozenset(
    {
        "max_retries",
        "backoff_base",
        "backoff_max",
        "connect_timeout",
        "read_timeout",
        "client",
        "max_concurrency",
        "api_key_source",
    }
)
_ECHO_KNOBS = frozenset({"word_delay"})


def create_provider(
    kind: ProviderKind,
    name: str,
    *,
    base_url: str | None,
    api_key: str | None,
    **knobs: Any,
) -> ModelProvider:
    """``base_url=None`` means the kind's default. Knobs that belong to another kind
    (``word_delay`` for an HTTP provider, retries for echo) are ignored so one config
    section shape fits every kind; a knob no kind knows is a ``TypeError``."""
    unknown = set(knobs) - _HTTP_KNOBS - _ECHO_KNOBS
    if unknown:
        raise TypeError(f"unknown provider settings: {', '.join(sorted(unknown))}")
    if kind == "echo":
        return EchoProvider(name, **{k: v for k, v in knobs.items() if k in _ECHO_KNOBS})
    http_knobs = {k: v for k, v in knobs.items() if k in _HTTP_KNOBS}
    if kind == "openai":
        url = base_url or OPENAI_URL
        return OpenAIProvider(name, base_url=url, api_key=api_key or "", **http_knobs)
    if kind == "anthropic":
        url = base_url or ANTHROPIC_URL
        return AnthropicProvider(name, base_url=url, api_key=api_key or "", **http_knobs)
    raise ValueError(f"unknown provider kind {kind!r} (expected openai, anthropic or echo)")
