"""The configuration schema: what `config/gateway.toml` may contain, and its defaults.

Every model forbids unknown keys so a typo is an error rather than a silently ignored
setting. The file may say ``enabled = "auto"`` and ``kind = "auto"``; the loader
(`gateway.config_loader`) resolves both against the environment before validation, so a
loaded `GatewayConfig` only ever holds booleans and concrete provider kinds. What the
loader decided, and why, is kept in `GatewayConfig.notes` for `agent-gateway check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from adapters.common.endpoints import (
    DISCORD_API_BASE,
    DISCORD_GATEWAY_URL,
    SLACK_API_URL,
    TELEGRAM_BASE_FILE_URL,
    TELEGRAM_BASE_URL,
)
from runtime.providers.anthropic import DEFAULT_BASE_URL as ANTHROPIC_BASE_URL
from runtime.providers.openai import DEFAULT_BASE_URL as OPENAI_BASE_URL

AdapterName = Literal["telegram", "discord", "slack", "webchat"]
ADAPTER_NAMES: tuple[AdapterName, ...] = ("telegram", "discord", "slack", "webchat")

ProviderKind = Literal["openai", "anthropic", "echo"]
DEFAULT_BASE_URLS: Mapping[str, str] = {
    "openai": OPENAI_BASE_URL,
    "anthropic": ANTHROPIC_BASE_URL,
}
ECHO_MODEL = "echo"

# Per adapter: the setting that selects a mode, and its default.
_MODE_DEFAULTS: Mapping[str, str] = {"telegram": "polling", "slack": "socket"}
# Credentials needed only in some modes (messages say which mode asked for them).
MODE_KEYS = frozenset({"app_token", "signing_secret", "webhook_secret"})


def _blank_to_none(value: object) -> object:
    # Interpolating an unset variable yields "", which means "not set", not "set to empty".
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _int_to_str(value: object) -> object:
    # Platform ids are often written as TOML integers (Telegram chat ids, Discord
    # snowflakes); they are compared as strings everywhere else.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Secret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
PlatformId = Annotated[str, BeforeValidator(_int_to_str)]


def _split_ids(value: object) -> object:
    # A string is a comma list, so an allowlist can come from one environment variable:
    # allowed_users = "${TELEGRAM_ALLOWED_USERS:-}" with TELEGRAM_ALLOWED_USERS=42,43.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


UserIds = Annotated[list[PlatformId], BeforeValidator(_split_ids)]
OptionalPlatformId = Annotated[
    str | None, BeforeValidator(_int_to_str), BeforeValidator(_blank_to_none)
]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class StorageConfig(Section):
    """SQLite at ``path`` unless ``url`` names a PostgreSQL database (url wins)."""

    path: Path = Path("data/gateway.db")
    url: Secret = None  # may carry a password: never echoed

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                "must start with postgresql:// or postgres:// (a PostgreSQL database); "
                "remove it to use the SQLite file at storage.path"
            )
        return url


class LoggingConfig(Section):
    level: LogLevel = "INFO"


class ProviderConfig(Section):
    kind: ProviderKind
    base_url: OptionalText = None
    api_key: Secret = None
    default_model: OptionalText = None
    max_retries: int = Field(3, ge=0)
    backoff_base: float = Field(0.5, ge=0)
    word_delay: float = Field(0.05, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_kind(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        kind = data.get("kind")
        filled = dict(data)
        if (
            isinstance(kind, str)
            and kind in DEFAULT_BASE_URLS
            and _blank_to_none(data.get("base_url")) is None
        ):
            filled["base_url"] = DEFAULT_BASE_URLS[kind]
        if kind == "echo" and _blank_to_none(data.get("default_model")) is None:
            filled["default_model"] = ECHO_MODEL
        return filled


class McpServerConfig(Section):
    """One ``[[agents.NAME.mcp]]`` entry: a stdio server (``command``) or a
    streamable-HTTP one (``url``); its tools are offered as ``name__tool``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    command: OptionalText = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: OptionalText = None
    url: OptionalText = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    approve: bool | list[str] = False
    timeout: float = Field(60.0, gt=0)
    connect_timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "set command (a stdio server) or url (a streamable-HTTP server), not both"
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class AgentConfig(Section):
    """``system_prompt`` holds the prompt text once loaded, read from the file if given."""

    provider: str
    model: str
    system_prompt: str = ""
    system_prompt_file: OptionalText = None
    max_iterations: int = Field(16, gt=0)
    tools: list[str] = Field(default_factory=lambda: ["get_time"])
    title_model: OptionalText = None
    compact_threshold: int | None = Field(None, gt=0)
    compact_retained_turns: int = Field(2, ge=1)
    mcp: list[McpServerConfig] = Field(default_factory=list)
    approve: list[str] = Field(default_factory=list)  # tool names needing approval
    tool_timeout: float = Field(60.0, gt=0)
    approval_timeout: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _mcp_names(self) -> AgentConfig:
        names = [server.name for server in self.mcp]
        if len(set(names)) != len(names):
            raise ValueError("mcp: each server needs its own name (tools are named NAME__tool)")
        for tool in self.approve:
            server = tool.split("__", 1)[0] if "__" in tool else None
            if tool not in self.tools and server not in names:
                raise ValueError(
                    f"approve: {tool!r} is neither one of this agent's tools nor "
                    "SERVER__tool for one of its mcp servers"
                )
        return self


class AdapterBase(Section):
    enabled: bool = True
    agent: OptionalText = None
    access: Literal["open", "allowlist"] = "open"
    allowed_users: UserIds = Field(default_factory=list)
    dm_conversation: Literal["tmp", "persistent"] = "tmp"
    respond: Literal["mention", "all"] = "mention"
    edit_interval: float = Field(1.0, gt=0)


class TelegramConfig(AdapterBase):
    access: Literal["open", "allowlist"] = "allowlist"
    token: Secret = None
    base_url: str = TELEGRAM_BASE_URL
    base_file_url: str = TELEGRAM_BASE_FILE_URL
    mode: Literal["polling", "webhook"] = "polling"
    webhook_secret: Secret = None
    # The public https URL Telegram should post to (it must reach /telegram/webhook on
    # this server); without it, webhook mode serves the route but registers nothing.
    webhook_url: OptionalText = None


class DiscordConfig(AdapterBase):
    access: Literal["open", "allowlist"] = "allowlist"
    token: Secret = None
    api_base: str = DISCORD_API_BASE
    gateway_url: str = DISCORD_GATEWAY_URL


class SuggestedPrompt(Section):
    title: str
    message: str


class SlackConfig(AdapterBase):
    bot_token: Secret = None
    app_token: Secret = None
    signing_secret: Secret = None
    api_url: str = SLACK_API_URL
    mode: Literal["socket", "http"] = "socket"
    suggested_prompts: list[SuggestedPrompt] = Field(default_factory=list)
    greeting: OptionalText = None
    slash_command: str = "/agent"


class WebchatConfig(AdapterBase):
    """Served on the `[server]` unless ``port`` is set, then on its own listener."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)
    path: str = Field("/", pattern=r"^/")


AdapterConfig = TelegramConfig | DiscordConfig | SlackConfig | WebchatConfig


class AdaptersConfig(Section):
    """A missing section means the adapter is not configured at all."""

    telegram: TelegramConfig | None = None
    discord: DiscordConfig | None = None
    slack: SlackConfig | None = None
    webchat: WebchatConfig | None = None

    def configured(self) -> dict[AdapterName, AdapterConfig]:
        sections: dict[AdapterName, AdapterConfig | None] = {
            "telegram": self.telegram,
            "discord": self.discord,
            "slack": self.slack,
            "webchat": self.webchat,
        }
        return {name: section for name, section in sections.items() if section is not None}

    def enabled(self) -> dict[AdapterName, AdapterConfig]:
        return {name: section for name, section in self.configured().items() if section.enabled}


class BindingConfig(Section):
    """First matching binding wins; a match key that is absent matches anything."""

    adapter: AdapterName
    chat: OptionalPlatformId = None
    guild: OptionalPlatformId = None
    channel: OptionalPlatformId = None
    team: OptionalPlatformId = None
    agent: str


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadNotes:
    """What the loader decided from the environment, for `check` and the run banner.

    ``providers`` and ``adapters`` map a name to a short reason ("auto: OPENAI_API_KEY
    set"); ``echo_fallback`` names the ``kind = "auto"`` providers that found no model key.
    ``key_sources`` maps a provider to the environment variable its API key came from
    (``OPENAI_API_KEY``), so error hints name the setting actually in use.
    """

    source: Path | None = None
    providers: Mapping[str, str] = field(default_factory=dict)
    adapters: Mapping[str, str] = field(default_factory=dict)
    echo_fallback: tuple[str, ...] = ()
    key_sources: Mapping[str, str] = field(default_factory=dict)


class GatewayConfig(Section):
    default_agent: str
    shutdown_grace: float = Field(5.0, ge=0)
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    adapters: AdaptersConfig = Field(default_factory=AdaptersConfig)
    bindings: list[BindingConfig] = Field(default_factory=list)

    _notes: LoadNotes = PrivateAttr(default_factory=LoadNotes)

    @property
    def notes(self) -> LoadNotes:
        return self._notes

    def with_notes(self, notes: LoadNotes) -> GatewayConfig:
        """A copy carrying the loader's notes (the loader is the only caller)."""
        copy = self.model_copy()
        copy._notes = notes
        return copy


def adapter_mode(adapter: str, section: Mapping[str, object]) -> str | None:
    """The mode an adapter section asks for, or its default (None if it has no modes)."""
    default = _MODE_DEFAULTS.get(adapter)
    mode = section.get("mode", default)
    return mode if isinstance(mode, str) else default


def credential_keys(adapter: str, section: Mapping[str, object]) -> tuple[str, ...]:
    """Keys whose values must all be non-empty for ``enabled = "auto"`` to turn it on."""
    if adapter in ("telegram", "discord"):
        return ("token",)
    if adapter == "slack":
        if adapter_mode(adapter, section) == "http":
            return ("bot_token", "signing_secret")
        return ("bot_token", "app_token")
    return ()


def required_keys(adapter: str, section: Mapping[str, object]) -> tuple[str, ...]:
    """Keys an enabled adapter cannot start without (its credentials, and more by mode)."""
    keys = credential_keys(adapter, section)
    if adapter == "telegram" and adapter_mode(adapter, section) == "webhook":
        keys = (*keys, "webhook_secret")
    return keys
