"""Human-readable summaries of a loaded configuration: `check`'s report, `run`'s banner.

Nothing here prints a secret: keys and tokens appear only as "set" or "not set".
"""

from __future__ import annotations

from gateway.config import (
    ADAPTER_NAMES,
    AdapterName,
    AgentConfig,
    BindingConfig,
    GatewayConfig,
    ProviderConfig,
    WebchatConfig,
)

ECHO_NOTICE = (
    "no model key set: using the offline echo model "
    "(set OPENAI_API_KEY or ANTHROPIC_API_KEY to use a real one)"
)


def _storage(config: GatewayConfig) -> str:
    if config.storage.url is None:
        return str(config.storage.path)
    # Imported only then: a SQLite deployment never loads psycopg.
    from runtime.storage.postgres import describe_url

    url = describe_url(config.storage.url.get_secret_value())
    return f"{url} (PostgreSQL; replicas on it share the work)"


def describe(config: GatewayConfig) -> str:
    """What `agent-gateway check` prints: everything that would start, and why."""
    lines: list[str] = []
    if config.notes.source is not None:
        lines.append(f"configuration: {config.notes.source}")
    lines += [
        f"server: http://{config.server.host}:{config.server.port}",
        f"storage: {_storage(config)}",
        f"logging: {config.logging.level}",
        f"default agent: {config.default_agent}",
        "agents:",
    ]
    lines += [f"  {name}: {_agent(agent)}" for name, agent in config.agents.items()]
    lines.append("providers:")
    lines += [
        f"  {name}: {_provider(config, name, provider)}"
        for name, provider in config.providers.items()
    ]
    lines.append("adapters:")
    lines += [f"  {name}: {_adapter(config, name)}" for name in ADAPTER_NAMES]
    if config.bindings:
        lines.append("bindings (first match wins):")
        lines += [f"  {index}. {_binding(b)}" for index, b in enumerate(config.bindings, 1)]
    else:
        lines.append("bindings: none")
    return "\n".join(lines)


def announcement(config: GatewayConfig) -> list[str]:
    """The short lines `agent-gateway run` prints before serving."""
    lines: list[str] = []
    if config.notes.source is not None:
        lines.append(f"configuration: {config.notes.source}")
    if config.notes.echo_fallback:
        lines.append(ECHO_NOTICE)
    enabled = config.adapters.enabled()
    if enabled:
        lines.append("adapters: " + ", ".join(enabled))
    else:
        lines.append("no adapter enabled: set a platform token or enable [adapters.webchat]")
    if config.adapters.webchat is not None and config.adapters.webchat.enabled:
        lines.append(f"web chat: {webchat_url(config, config.adapters.webchat)}")
    return lines


# How someone finds the id to put on an allowlist, per platform.
_FIND_ID = {
    "telegram": "message the bot and it replies with your id (or ask @userinfobot)",
    "discord": (
        "message the bot and it replies with your id (or turn on Developer Mode in "
        "Discord's settings, then right-click your name and Copy User ID)"
    ),
}


def allowlist_hint(name: str) -> str:
    """How to allow someone on adapter ``name`` without editing the file."""
    find = _FIND_ID.get(name)
    if find is None:
        return f"list ids in adapters.{name}.allowed_users; a refused user is told their id"
    variable = f"{name.upper()}_ALLOWED_USERS"
    return f"set {variable}=ID,ID (or adapters.{name}.allowed_users); to find your id, {find}"


def webchat_url(config: GatewayConfig, webchat: WebchatConfig) -> str:
    """Where the web chat page is served: its own listener if it has a port, else `[server]`."""
    if webchat.port is not None:
        return f"http://{webchat.host}:{webchat.port}{webchat.path}"
    return f"http://{config.server.host}:{config.server.port}{webchat.path}"


def _agent(agent: AgentConfig) -> str:
    tools = f"tools [{', '.join(agent.tools)}]" if agent.tools else "no tools"
    parts = [f"provider {agent.provider}", f"model {agent.model}", tools]
    parts.append(f"max_iterations {agent.max_iterations}")
    if agent.title_model is not None:
        parts.append(f"title_model {agent.title_model}")
    if agent.compact_threshold is not None:
        parts.append(
            f"compacts past {agent.compact_threshold} tokens, "
            f"keeping {agent.compact_retained_turns} turns"
        )
    if agent.system_prompt_file is not None:
        parts.append(f"system prompt from {agent.system_prompt_file}")
    elif not agent.system_prompt:
        parts.append("no system prompt")
    if agent.mcp:  # the servers, never their headers or environment (secrets)
        servers = [f"{m.name} ({'stdio' if m.command else 'http'})" for m in agent.mcp]
        parts.append(f"MCP servers [{', '.join(servers)}]")
    if agent.approve:
        parts.append(f"asks before [{', '.join(agent.approve)}]")
    return ", ".join(parts)


def _provider(config: GatewayConfig, name: str, provider: ProviderConfig) -> str:
    kind: str = provider.kind
    note = config.notes.providers.get(name)
    if note is not None:
        kind = f"{kind} ({note})"
    key = "set" if provider.api_key is not None else "not set"
    parts = [f"kind {kind}", f"base_url {provider.base_url or '-'}", f"key {key}"]
    if provider.default_model is not None:
        parts.append(f"default_model {provider.default_model}")
    return ", ".join(parts)


def _adapter(config: GatewayConfig, name: AdapterName) -> str:
    section = config.adapters.configured().get(name)
    note = config.notes.adapters.get(name)
    if section is None:
        return "off (not configured)"
    state = "on" if section.enabled else "off"
    text = f"{state} ({note})" if note is not None else state
    if not section.enabled:
        return text
    agent = section.agent or config.default_agent
    text += f", agent {agent}, access {section.access}"
    if section.access == "allowlist":
        count = len(section.allowed_users)
        text += f" ({count} user{'s' if count != 1 else ''})"
        if count == 0:
            text += f" [everyone is refused: {allowlist_hint(name)}]"
    mode = getattr(section, "mode", None)
    if mode is not None:
        text += f", mode {mode}"
    if isinstance(section, WebchatConfig):
        text += f", {webchat_url(config, section)}"
    return text


def _binding(binding: BindingConfig) -> str:
    keys = {
        "chat": binding.chat,
        "guild": binding.guild,
        "channel": binding.channel,
        "team": binding.team,
    }
    match = " ".join(f"{key}={value}" for key, value in keys.items() if value is not None)
    where = f"{binding.adapter} {match}" if match else f"{binding.adapter} (any)"
    return f"{where} -> {binding.agent}"
