"""Approval on Slack end to end, in Socket Mode and in HTTP mode: a real Gateway with
slack-bolt against the fake Slack, an MCP tool served over streamable HTTP (the fake MCP
server in a child process) marked for approval; the question carries Block Kit buttons,
a press arrives as ``block_actions`` and is answered with an ephemeral message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from runtime.history import ToolResultEntry
from tests.fakes.mcp_server import http_server
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.fakes.slack_api import FakeSlack, SlackMessage
from tests.gateway_config import slack_section, write_gateway_toml
from tests.runtime_helpers import wait_for

DM = "D0DIRECT01"
USER = "U0HUMAN001"
OTHER = "U0HUMAN002"
SECRET = "test-signing-secret"
MODES = pytest.mark.parametrize("mode", ["socket", "http"])

WEB_MCP = """
[[agents.assistant.mcp]]
name = "web"
url = {url}
approve = true
"""


@dataclass(kw_only=True, slots=True)
class Slack:
    fake: FakeSlack
    gateway: Gateway
    provider: ScriptedProvider
    mode: str

    @property
    def url(self) -> str:
        assert self.gateway.server is not None
        return f"{self.gateway.server.url}/slack/events"

    async def say(self, text: str) -> None:
        event = self.fake.message_event(DM, USER, text)
        if self.mode == "socket":
            await self.fake.wait_for_ack(await self.fake.send_event(event))
        else:
            status, _ = await self.fake.deliver_http(self.url, event, signing_secret=SECRET)
            assert status == 200

    async def press(self, message: SlackMessage, action_id: str, user: str) -> None:
        if self.mode == "socket":
            envelope = await self.fake.send_block_action(
                DM, message.ts, user=user, action_id=action_id
            )
            await self.fake.wait_for_ack(envelope)
        else:
            status, _ = await self.fake.deliver_block_action_http(
                self.url, DM, message.ts, user=user, action_id=action_id, signing_secret=SECRET
            )
            assert status == 200

    def question(self) -> SlackMessage | None:
        return next((m for m in self.fake.bot_messages(DM) if "wants to run" in m.text), None)

    def ephemeral(self, user: str) -> list[str]:
        return [e["text"] for e in self.fake.ephemerals if e["user"] == user]

    def last_result(self) -> ToolResultEntry:
        messages = self.provider.requests[-1].messages
        return [e for e in messages if isinstance(e, ToolResultEntry)][-1]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@asynccontextmanager
async def running(
    tmp_path: Path, fake: FakeSlack, mode: str, approval_timeout: float = 30
) -> AsyncIterator[Slack]:
    async with http_server() as url:
        path = write_gateway_toml(
            tmp_path,
            WEB_MCP.format(url=json.dumps(url)),
            slack_section(fake, mode=mode, signing_secret=SECRET),
            agent="assistant",
            agent_keys=f"approval_timeout = {approval_timeout}",
            shutdown_grace=0.5,
        )
        provider = ScriptedProvider("main")
        gateway = Gateway(load_config(path, env={}), providers={"main": provider})
        await gateway.start()
        try:
            assert gateway.pipeline is not None
            adapter = gateway.pipeline.adapters["slack"]
            await wait_for(lambda: adapter.state == "connected")
            yield Slack(fake=fake, gateway=gateway, provider=provider, mode=mode)
        finally:
            await gateway.stop()


@MODES
async def test_block_actions_only_the_owner_decides(
    tmp_path: Path, fake: FakeSlack, mode: str
) -> None:
    async with running(tmp_path, fake, mode) as slack:
        slack.provider.script(Call("web__echo", '{"text": "hi"}'))
        slack.provider.script(Text("Echoed."))
        await slack.say("echo hi")
        asked = await fake.wait_for(slack.question)
        assert asked.text == 'The agent wants to run web__echo with {"text": "hi"}. Allow it?'
        labels = [label for label, _, _ in fake.buttons(DM, asked.ts)]
        assert labels == ["Approve", "Deny"]
        await slack.press(asked, "approval_approve", OTHER)
        await fake.wait_for(lambda: slack.ephemeral(OTHER))
        assert slack.ephemeral(OTHER)[0].startswith("Only the person")
        await slack.press(asked, "approval_deny", USER)
        await fake.wait_for(lambda: slack.ephemeral(USER) == ["Denied."])
        settled = await fake.wait_for(
            lambda: (
                fake.messages[(DM, asked.ts)]
                if fake.messages[(DM, asked.ts)].text.startswith("web__echo: denied")
                else None
            )
        )
        assert fake.buttons(DM, settled.ts) == []  # the buttons are gone
        await fake.wait_for(lambda: any(m.text == "Echoed." for m in fake.bot_messages(DM)))
        result = slack.last_result()
        assert result.is_error
        assert "did not allow 'web__echo'" in result.content


@MODES
async def test_no_press_before_the_timeout_is_a_denial(
    tmp_path: Path, fake: FakeSlack, mode: str
) -> None:
    async with running(tmp_path, fake, mode, approval_timeout=0.3) as slack:
        slack.provider.script(Call("web__add", '{"a": 1, "b": 2}'))
        slack.provider.script(Text("Skipped."))
        await slack.say("add")
        asked = await fake.wait_for(slack.question)
        await fake.wait_for(
            lambda: fake.messages[(DM, asked.ts)].text == "web__add: no answer in time, denied."
        )
        await wait_for(lambda: len(slack.provider.requests) == 2)
        assert "nobody approved 'web__add' within 0.3 seconds" in slack.last_result().content
