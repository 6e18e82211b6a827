"""Config sections -> typed adapter settings: secrets unwrapped in one place, default
endpoints shared by the schema and the adapters, the access policy handed to Discord."""

from __future__ import annotations

import textwrap
from pathlib import Path

from adapters.common.endpoints import SLACK_API_URL, TELEGRAM_BASE_URL
from adapters.slack.adapter import SlackAdapter, SlackSettings
from adapters.slack.assistant import DEFAULT_GREETING
from adapters.telegram.adapter import TelegramSettings
from adapters.webchat.adapter import WebchatSettings
from gateway.config_loader import load_config
from gateway.wiring import (
    build_adapter,
    discord_settings,
    slack_settings,
    telegram_settings,
    webchat_settings,
)
from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentRegistry
from runtime.tools import ToolRegistry

CONFIG = """
default_agent = "a"
[providers.p]
kind = "echo"
[agents.a]
provider = "p"
model = "m"
[adapters.telegram]
token = "${TG}"
mode = "webhook"
webhook_secret = "hook-secret"
respond = "all"
[adapters.discord]
token = "discord-token"
access = "allowlist"
allowed_users = [42, "43"]
[adapters.slack]
bot_token = "xoxb-1"
app_token = "xapp-1"
suggested_prompts = [{ title = "Hi", message = "Say hi" }]
[adapters.webchat]
path = "/chat"
agent = "a"
"""


def test_each_section_becomes_its_adapter_settings(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    adapters = load_config(path, {"TG": "123:abc"}).adapters
    assert adapters.telegram is not None
    assert adapters.discord is not None
    assert adapters.slack is not None
    assert adapters.webchat is not None

    assert telegram_settings(adapters.telegram) == TelegramSettings(
        token="123:abc",
        base_url=TELEGRAM_BASE_URL,
        mode="webhook",
        webhook_secret="hook-secret",
        respond_all=True,
    )
    discord = discord_settings(adapters.discord)
    assert (discord.token, discord.access, discord.allowed_users) == (
        "discord-token",
        "allowlist",
        frozenset({"42", "43"}),
    )
    assert discord.allows("42")
    assert not discord.allows("7")
    assert slack_settings(adapters.slack) == SlackSettings(
        bot_token="xoxb-1",
        app_token="xapp-1",
        api_url=SLACK_API_URL,
        greeting=DEFAULT_GREETING,
        suggested_prompts=(("Hi", "Say hi"),),
    )
    assert webchat_settings(adapters.webchat) == WebchatSettings(path="/chat", default_agent="a")


async def test_build_adapter_constructs_from_the_typed_settings(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    config = load_config(path, {"TG": "123:abc"})
    assert config.adapters.slack is not None
    runtime = AgentRuntime(AgentRegistry([], {}, ToolRegistry()), None)
    adapter = build_adapter("slack", config.adapters.slack, runtime)
    assert isinstance(adapter, SlackAdapter)
    assert adapter.settings.bot_token == "xoxb-1"
    assert adapter.state == "stopped"
