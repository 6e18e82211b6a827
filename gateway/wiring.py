"""Config objects -> runtime and adapter objects. The only place that reads both."""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from pydantic import SecretStr

from adapters.base import Adapter
from gateway.config import (
    AdapterConfig,
    AgentConfig,
    DiscordConfig,
    GatewayConfig,
    McpServerConfig,
    ProviderConfig,
    SlackConfig,
    TelegramConfig,
    WebchatConfig,
)
from gateway.errors import GatewayError
from gateway.policy import AdapterPolicy, BindingRule
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentSpec
from runtime.mcp_tools import McpServerSpec
from runtime.providers.base import ModelProvider
from runtime.providers.factory import create_provider

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordSettings
    from adapters.slack.adapter import SlackSettings
    from adapters.telegram.adapter import TelegramSettings
    from adapters.webchat.adapter import WebchatSettings

ADAPTER_NAMES = ("webchat", "telegram", "discord", "slack")


def secret(value: SecretStr | None) -> str:
    """The one place a configured secret is unwrapped (adapters get plain settings)."""
    return "" if value is None else value.get_secret_value()


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
        approve=tuple(cfg.approve),
        tool_timeout=cfg.tool_timeout,
        approval_timeout=cfg.approval_timeout,
    )


def mcp_spec(cfg: McpServerConfig) -> McpServerSpec:
    return McpServerSpec(
        name=cfg.name,
        command=cfg.command,
        args=tuple(cfg.args),
        env=dict(cfg.env),
        cwd=cfg.cwd,
        url=cfg.url,
        headers={key: secret(value) for key, value in cfg.headers.items()},
        allow=tuple(cfg.allow),
        deny=tuple(cfg.deny),
        approve=cfg.approve if isinstance(cfg.approve, bool) else tuple(cfg.approve),
        timeout=cfg.timeout,
        connect_timeout=cfg.connect_timeout,
    )


def mcp_specs(config: GatewayConfig) -> dict[str, list[McpServerSpec]]:
    return {
        name: [mcp_spec(server) for server in agent.mcp]
        for name, agent in config.agents.items()
        if agent.mcp
    }


def enabled_sections(config: GatewayConfig) -> dict[str, AdapterConfig]:
    sections = {name: getattr(config.adapters, name) for name in ADAPTER_NAMES}
    return {name: s for name, s in sections.items() if s is not None and s.enabled}


def policy(name: str, section: AdapterConfig) -> AdapterPolicy:
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


def telegram_settings(section: TelegramConfig) -> TelegramSettings:
    from adapters.telegram.adapter import TelegramSettings

    return TelegramSettings(
        token=secret(section.token),
        base_url=section.base_url,
        base_file_url=section.base_file_url,
        mode=section.mode,
        webhook_secret=secret(section.webhook_secret),
        webhook_url=section.webhook_url,
        respond_all=section.respond == "all",
    )


def discord_settings(section: DiscordConfig) -> DiscordSettings:
    from adapters.discord.adapter import DiscordSettings

    return DiscordSettings(
        token=secret(section.token),
        api_base=section.api_base,
        gateway_url=section.gateway_url,
        respond_all=section.respond == "all",
        access=section.access,
        allowed_users=frozenset(section.allowed_users),
    )


def slack_settings(section: SlackConfig) -> SlackSettings:
    from adapters.slack.adapter import SlackSettings
    from adapters.slack.assistant import DEFAULT_GREETING

    return SlackSettings(
        bot_token=secret(section.bot_token),
        app_token=secret(section.app_token),
        signing_secret=secret(section.signing_secret),
        api_url=section.api_url,
        mode=section.mode,
        greeting=section.greeting or DEFAULT_GREETING,
        suggested_prompts=tuple((p.title, p.message) for p in section.suggested_prompts),
        slash_command=section.slash_command,
        respond=section.respond,
    )


def webchat_settings(section: WebchatConfig) -> WebchatSettings:
    from adapters.webchat.adapter import WebchatSettings

    return WebchatSettings(path=section.path, default_agent=section.agent)


def build_adapter(name: str, section: AdapterConfig, runtime: AgentRuntime) -> Adapter:
    """The adapter a section describes. Each adapter module is imported only when its
    section is enabled, so a process without Slack never imports slack-bolt."""
    try:
        return _construct(section, runtime)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith(f"adapters.{name}"):
            raise GatewayError(
                f"adapters.{name}: this adapter is not available in this build; set enabled = false"
            ) from exc
        raise


def _construct(section: AdapterConfig, runtime: AgentRuntime) -> Adapter:
    match section:
        case TelegramConfig():
            from adapters.telegram.adapter import TelegramAdapter

            return TelegramAdapter(telegram_settings(section))
        case DiscordConfig():
            from adapters.discord.adapter import DiscordAdapter

            return DiscordAdapter(discord_settings(section), storage=runtime.storage)
        case SlackConfig():
            from adapters.slack.adapter import SlackAdapter

            return SlackAdapter(slack_settings(section), storage=runtime.storage)
        case WebchatConfig():
            from adapters.webchat.adapter import WebchatAdapter

            return WebchatAdapter(webchat_settings(section), runtime)
        case _:
            assert_never(section)


def collect_secrets(config: GatewayConfig) -> list[str]:
    found = [secret(p.api_key) for p in config.providers.values()]
    for section in (getattr(config.adapters, n) for n in ADAPTER_NAMES):
        if section is None:
            continue
        for key in ("token", "bot_token", "app_token", "signing_secret", "webhook_secret"):
            found.append(secret(getattr(section, key, None)))
    for agent in config.agents.values():
        for server in agent.mcp:
            found.extend(secret(v) for v in server.headers.values())
            # A stdio server's environment is where its API keys usually go.
            found.extend(v for v in server.env.values() if len(v) >= 8)
    return [s for s in found if s]
