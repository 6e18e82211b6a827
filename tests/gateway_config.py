"""Configuration files for tests that run the whole gateway against the platform fakes.

They share a base: one echo provider ``main``, one agent using it, storage in the test's
folder and the server on a free port. What varies (the agent's keys, its MCP servers,
the adapter section) is passed in as TOML text, built by the helpers below where it is
the same across tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.adapter import DiscordSettings
from adapters.telegram.adapter import TelegramAdapter
from gateway import wiring
from gateway.app import Gateway
from gateway.config import DiscordConfig, GatewayConfig
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.mcp_server import ROOT, stdio_command
from tests.fakes.scripted_provider import ScriptedProvider
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram
from tests.runtime_helpers import wait_for


def write_gateway_toml(
    folder: Path,
    *tables: str,
    agent: str = "bot",
    agent_keys: str = "",
    provider_keys: str = "",
    shutdown_grace: float = 1,
) -> Path:
    """Write ``folder/gateway.toml``; ``tables`` (MCP servers, adapter sections) follow
    the agent's table, so ``agent_keys`` are the only keys that land in it."""
    text = f"""
default_agent = "{agent}"
shutdown_grace = {shutdown_grace}

[server]
port = 0

[storage]
path = {json.dumps(str(folder / "gateway.db"))}

[providers.main]
kind = "echo"
{provider_keys}

[agents.{agent}]
provider = "main"
{agent_keys}
"""
    path = folder / "gateway.toml"
    path.write_text(text + "".join(tables), encoding="utf-8")
    return path


def fake_mcp_server(agent: str = "bot") -> str:
    """The stdio MCP fake (tests/fakes/mcp_server.py), whose ``add`` tool asks first."""
    command, args = stdio_command()
    return f"""
[[agents.{agent}.mcp]]
name = "fake"
command = {json.dumps(command)}
args = {json.dumps(args)}
cwd = {json.dumps(str(ROOT))}
approve = ["add"]
"""


WEBCHAT_SECTION = """
[adapters.webchat]
enabled = true
edit_interval = 0.05
"""


def telegram_section(fake: FakeTelegram, extra: str = "") -> str:
    """Telegram against the fake; the token comes from ``${TELEGRAM_BOT_TOKEN}``."""
    return f"""
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = "{fake.base_url}"
base_file_url = "{fake.base_file_url}"
access = "open"
edit_interval = 0.05
{extra}
"""


def discord_section(fake: FakeDiscord) -> str:
    """Discord against the fake; the token comes from ``${DISCORD_BOT_TOKEN}``."""
    return f"""
[adapters.discord]
token = "${{DISCORD_BOT_TOKEN}}"
api_base = "{fake.api_base}"
gateway_url = "{fake.gateway_url}"
access = "open"
edit_interval = 0.05
"""


def slack_section(
    fake: FakeSlack,
    *,
    mode: str,
    signing_secret: str,
    bot_token: str | None = None,
    app_token: str | None = None,
    extra: str = "",
) -> str:
    """Slack against the fake, with the fake's tokens inline unless others are given."""
    return f"""
[adapters.slack]
bot_token = {json.dumps(bot_token or fake.bot_token)}
app_token = {json.dumps(app_token or fake.app_token)}
signing_secret = {json.dumps(signing_secret)}
api_url = {json.dumps(fake.api_url)}
mode = {json.dumps(mode)}
edit_interval = 0.02
{extra}
"""


def shorten_discord_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway builds the Discord adapter from its config section; only the timings
    of discord.py's hooks (the pause before IDENTIFY, the wait for guilds) are shortened."""
    original = wiring.discord_settings

    def fast(section: DiscordConfig) -> DiscordSettings:
        return dataclasses.replace(original(section), identify_delay=0.0, guild_ready_timeout=0.05)

    monkeypatch.setattr(wiring, "discord_settings", fast)


@dataclass(kw_only=True, slots=True)
class TelegramRun:
    gateway: Gateway
    adapter: TelegramAdapter
    provider: ScriptedProvider


@asynccontextmanager
async def running_telegram(config: GatewayConfig, **overrides: Any) -> AsyncIterator[TelegramRun]:
    """The gateway on ``config``, its model the scripted provider ``main`` and its
    Telegram adapter polling fast (1 s long polls, 10 ms retries; ``overrides`` change
    any setting); yields once the adapter is connected, stops the gateway after."""
    section = config.adapters.telegram
    assert section is not None
    fast = {"poll_timeout": 1, "retry_base": 0.01} | overrides
    adapter = TelegramAdapter(dataclasses.replace(wiring.telegram_settings(section), **fast))
    provider = ScriptedProvider("main")
    gateway = Gateway(config, adapters={"telegram": adapter}, providers={"main": provider})
    await gateway.start()
    try:
        await wait_for(lambda: adapter.state == "connected")
        yield TelegramRun(gateway=gateway, adapter=adapter, provider=provider)
    finally:
        await gateway.stop()
