"""`agent-gateway doctor` against the local fakes: every credential and provider tried
once, one line per check, and a refused token named with its fix."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.config_loader import load_config
from gateway.doctor import Check, diagnose
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.llm_server import FakeLLMServer, HttpError, Script
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram

DISCORD_TOKEN = "discord-token-right"

CONFIG = """
default_agent = "a"
[storage]
path = {db}
[providers.gpt]
kind = "openai"
base_url = {openai_url}
api_key = "${{OPENAI_API_KEY}}"
[providers.claude]
kind = "anthropic"
base_url = {anthropic_url}
api_key = "sk-ant-test"
default_model = "claude-test"
[providers.offline]
kind = "echo"
[agents.a]
provider = "gpt"
model = "gpt-test"
[adapters.telegram]
token = "${{TELEGRAM_BOT_TOKEN}}"
base_url = {telegram_url}
[adapters.discord]
token = "${{DISCORD_BOT_TOKEN}}"
api_base = {discord_url}
[adapters.slack]
bot_token = "${{SLACK_BOT_TOKEN}}"
app_token = "${{SLACK_APP_TOKEN}}"
api_url = {slack_url}
[adapters.webchat]
enabled = true
"""


@dataclass(kw_only=True, slots=True)
class Fakes:
    telegram: FakeTelegram
    discord: FakeDiscord
    slack: FakeSlack
    llm: FakeLLMServer

    def env(self, **overrides: str) -> dict[str, str]:
        good = {
            "OPENAI_API_KEY": "sk-test",
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "DISCORD_BOT_TOKEN": DISCORD_TOKEN,
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            "SLACK_APP_TOKEN": self.slack.app_token,
        }
        return good | overrides


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    found = Fakes(
        telegram=FakeTelegram(),
        discord=FakeDiscord(token=DISCORD_TOKEN),
        slack=FakeSlack(),
        llm=FakeLLMServer(),
    )
    servers = (found.telegram, found.discord, found.slack, found.llm)
    for server in servers:
        await server.start()
    try:
        yield found
    finally:
        for server in reversed(servers):
            await server.stop()


def write_config(tmp_path: Path, fakes: Fakes, **urls: str) -> Path:
    values = {
        "db": str(tmp_path / "gateway.db"),
        "openai_url": f"{fakes.llm.url}/v1",
        "anthropic_url": fakes.llm.url,
        "telegram_url": fakes.telegram.base_url,
        "discord_url": fakes.discord.api_base,
        "slack_url": fakes.slack.api_url,
    } | urls
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(**{key: json.dumps(value) for key, value in values.items()}))
    return path


def load(tmp_path: Path, fakes: Fakes, env: dict[str, str], **urls: str) -> GatewayConfig:
    return load_config(write_config(tmp_path, fakes, **urls), env)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_everything_reachable_is_ok_in_report_order(tmp_path: Path, fakes: Fakes) -> None:
    checks = await diagnose(load(tmp_path, fakes, fakes.env()))

    assert [check.name for check in checks] == [
        "config",
        "storage",
        "telegram",
        "discord",
        "slack",
        "webchat",
        "provider gpt",
        "provider claude",
        "provider offline",
    ]
    assert [check for check in checks if not check.ok] == []
    found = by_name(checks)
    assert found["telegram"].detail.startswith("signed in as @")
    assert "Socket Mode" in found["slack"].detail
    assert found["provider gpt"].detail == f"model gpt-test answered at {fakes.llm.url}/v1"
    # One tiny request per real provider, the way the gateway sends it.
    requests = await fakes.llm.wait_for_requests(2)
    assert sorted(request.path for request in requests) == [
        "/v1/chat/completions",
        "/v1/messages",
    ]
    assert all(request.json["stream"] is True for request in requests)


async def test_refused_tokens_and_keys_fail_with_their_fix(tmp_path: Path, fakes: Fakes) -> None:
    fakes.llm.script(Script(error=HttpError(401)))
    env = fakes.env(
        TELEGRAM_BOT_TOKEN="123:wrong",
        DISCORD_BOT_TOKEN="wrong",
        SLACK_BOT_TOKEN="xoxb-wrong",
        OPENAI_API_KEY="sk-wrong",
    )

    found = by_name(await diagnose(load(tmp_path, fakes, env)))

    failed = {name for name, check in found.items() if not check.ok}
    # The scripted 401 goes to whichever provider asks first; the other must pass.
    assert failed - {"provider gpt", "provider claude"} == {"telegram", "discord", "slack"}
    assert len(failed & {"provider gpt", "provider claude"}) == 1
    assert "set adapters.telegram.token (TELEGRAM_BOT_TOKEN)" in found["telegram"].detail
    assert "HTTP 401" in found["discord"].detail
    assert "invalid_auth" in found["slack"].detail
    [provider] = [found[name] for name in failed if name.startswith("provider")]
    assert "refused the API key" in provider.detail
    for check in found.values():
        for value in env.values():
            assert value not in str(check)


async def test_unreachable_and_unopenable_fail_without_hanging(
    tmp_path: Path, fakes: Fakes
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    (tmp_path / "gateway.db").mkdir()  # storage.path names a directory
    config = load(tmp_path, fakes, fakes.env(), telegram_url=f"{dead}/bot", openai_url=dead)

    async with asyncio.timeout(20):
        found = by_name(await diagnose(config, timeout=5))

    assert not found["storage"].ok
    assert not found["telegram"].ok
    assert "check adapters.telegram.base_url" in found["telegram"].detail
    assert fakes.telegram.token not in found["telegram"].detail
    assert not found["provider gpt"].ok
    assert found["discord"].ok


async def test_cli_prints_one_line_per_check_and_exits_1_on_a_failure(
    tmp_path: Path,
    fakes: Fakes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_config(tmp_path, fakes)
    for name, value in fakes.env(DISCORD_BOT_TOKEN="wrong").items():
        monkeypatch.setenv(name, value)

    # main() runs its own event loop, so it runs in a thread while the fakes serve here.
    code = await asyncio.to_thread(main, ["doctor", "-c", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert len(lines) == 9
    assert lines[0].startswith("ok   config: ")
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL discord: the bot token was refused (HTTP 401); set adapters.discord.token "
        "(DISCORD_BOT_TOKEN) to the token on the Bot page of the developer portal"
    ]


def test_cli_doctor_on_a_broken_config_reports_it_as_the_failed_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('default_agent = "missing"\n')

    code = main(["doctor", "-c", str(path)])

    out = capsys.readouterr().out
    assert code == 2
    assert out.startswith('FAIL config: default_agent: no agent named "missing"')


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("agent-gateway ")
    assert out.split()[1][0].isdigit()
