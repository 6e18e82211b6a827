"""Config objects -> runtime and adapter objects. The only place that reads both."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from adapters.base import Adapter
from gateway.config import AgentConfig, GatewayConfig, ProviderConfig
from gateway.errors import GatewayError
from gateway.policy import AdapterPolicy, BindingRule
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentSpec
from runtime.providers.base import ModelProvider
from runtime.providers.factory import create_provider

ADAPTER_NAMES = ("webchat", "telegram", "discord", "slack")


def secret(value: Any) -> str:
    return "" if value is None else str(value.get_secret_value())


def build_provider(
    name: str, cfg: ProviderConfig, *, api_key_source: str | None = None
) -> ModelProvider:
    """``api_key_source``: the environment variable the key came from, if any."""
    return create_provider(
        cfg.kind,
        name,
        base_url=cfg.base_url,
        api_key=secret(cfg.api_key),
        api_key_source=api_key_source,
        max_retries=cfg.max_retries,
        backoff_base=cfg.backoff_base,
        word_delay=cfg.word_delay,
    )


def agent_spec(name: str, cfg: AgentConfig) -> AgentSpec:
    return AgentSpec(
        name=name,
        provider=cfg.provider,
        model=cfg.model,
        system_prompt=cfg.system_prompt,
        max_iterations=cfg.max_iterations,
        tools=tuple(cfg.tools),
        title_model=cfg.title_model,
        compact_threshold=cfg.compact_threshold,
        compact_retained_turns=cfg.compact_retained_turns,
    )


def enabled_sections(config: GatewayConfig) -> dict[str, Any]:
    sections = {name: getattr(config.adapters, name) for name in ADAPTER_NAMES}
    return {name: s for name, s in sections.items() if s is not None and s.enabled}


def policy(name: str, section: Any) -> AdapterPolicy:
    return AdapterPolicy(
        name=name,
        access=section.access,
        allowed_users=frozenset(str(u) for u in section.allowed_users),
        dm_conversation=section.dm_conversation,
        respond=section.respond,
        agent=section.agent,
        edit_interval=section.edit_interval,
    )


def bindings(config: GatewayConfig) -> list[BindingRule]:
    return [
        BindingRule(
            adapter=b.adapter,
            agent=b.agent,
            chat=b.chat,
            guild=b.guild,
            channel=b.channel,
            team=b.team,
        )
        for b in config.bindings
    ]


AdapterFactory = Callable[[Any, AgentRuntime], Adapter]


def build_adapter(name: str, section: Any, runtime: AgentRuntime) -> Adapter:
    """Each adapter module offers ``from_config(section, runtime)``; imported only when
    enabled so a process without Slack never imports slack-bolt."""
    try:
        module = importlib.import_module(f"adapters.{name}.adapter")
    except ModuleNotFoundError as exc:
        if exc.name in (f"adapters.{name}", f"adapters.{name}.adapter"):
            raise GatewayError(
                f"adapters.{name}: this adapter is not available in this build; set enabled = false"
            ) from exc
        raise
    factory: AdapterFactory = module.from_config
    return factory(section, runtime)


def collect_secrets(config: GatewayConfig) -> list[str]:
    found = [secret(p.api_key) for p in config.providers.values()]
    for section in (getattr(config.adapters, n) for n in ADAPTER_NAMES):
        if section is None:
            continue
        for key in ("token", "bot_token", "app_token", "signing_secret", "webhook_secret"):
            found.append(secret(getattr(section, key, None)))
    return [s for s in found if s]
