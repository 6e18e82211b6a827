"""Approval on Discord end to end: a real Gateway and discord.py against the fake
Discord, an MCP tool (the fake server over stdio) marked for approval; the question
carries buttons, a press is a component interaction answered ephemerally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from adapters.discord.adapter import DiscordAdapter
from gateway.app import Gateway
from gateway.config_loader import load_config
from runtime.history import ToolResultEntry
from tests.fakes.discord_api import FakeDiscord, FakeMessage, FakeUser
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.gateway_config import (
    discord_section,
    fake_mcp_server,
    shorten_discord_timings,
    write_gateway_toml,
)
from tests.runtime_helpers import wait_for

TOKEN = "fake-discord-token"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(token=TOKEN, heartbeat_interval_ms=200)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def fast_discord(monkeypatch: pytest.MonkeyPatch) -> None:
    shorten_discord_timings(monkeypatch)


@asynccontextmanager
async def running(
    tmp_path: Path, fake: FakeDiscord, approval_timeout: float = 30
) -> AsyncIterator[ScriptedProvider]:
    path = write_gateway_toml(
        tmp_path,
        fake_mcp_server(),
        discord_section(fake),
        agent_keys=f'model = "m1"\napproval_timeout = {approval_timeout}',
    )
    provider = ScriptedProvider("main")
    config = load_config(path, {"DISCORD_BOT_TOKEN": TOKEN})
    gateway = Gateway(config, providers={"main": provider})
    await gateway.start()
    try:
        assert gateway.pipeline is not None
        adapter = gateway.pipeline.adapters["discord"]
        assert isinstance(adapter, DiscordAdapter)
        await wait_for(lambda: adapter.state == "connected")
        yield provider
    finally:
        await gateway.stop()


def question(fake: FakeDiscord, channel_id: int) -> FakeMessage | None:
    for message_id in fake.channel(channel_id).message_ids:
        message = fake.messages[message_id]
        if message.author == fake.bot and "wants to run" in message.content:
            return message
    return None


def ephemeral_answers(fake: FakeDiscord, interaction: dict[str, object]) -> list[str]:
    return [
        str(c.json["data"]["content"])
        for c in fake.interaction_callbacks
        if c.interaction_id == int(str(interaction["id"])) and c.json["data"].get("flags") == 64
    ]


def last_result(provider: ScriptedProvider) -> ToolResultEntry:
    entries = [e for e in provider.requests[-1].messages if isinstance(e, ToolResultEntry)]
    return entries[-1]


async def test_buttons_only_the_owner_decides(tmp_path: Path, fake: FakeDiscord) -> None:
    alice: FakeUser = fake.add_user("alice")
    bob: FakeUser = fake.add_user("bob")
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake) as provider:
        provider.script(Call("fake__add", '{"a": 5, "b": 6}'))
        provider.script(Text("Eleven."))
        await fake.user_sends(dm.id, alice, "add five and six")
        asked = await fake.wait_for(lambda: question(fake, dm.id))
        assert asked is not None
        assert asked.content == 'The agent wants to run fake__add with {"a": 5, "b": 6}. Allow it?'
        (approve_label, approve), (deny_label, _) = fake.buttons(asked.id)
        assert (approve_label, deny_label) == ("Approve", "Deny")
        refused = await fake.user_presses_button(asked.id, bob, approve)
        await fake.wait_for(lambda: ephemeral_answers(fake, refused))
        assert ephemeral_answers(fake, refused)[0].startswith("Only the person")
        accepted = await fake.user_presses_button(asked.id, alice, approve)
        await fake.wait_for(lambda: ephemeral_answers(fake, accepted) == ["Approved."])
        await fake.wait_for(lambda: asked.content.startswith("fake__add: approved"))
        assert asked.content == "fake__add: approved by Alice."
        assert fake.buttons(asked.id) == []  # the buttons are gone
        await fake.wait_for(
            lambda: any(fake.messages[i].content == "Eleven." for i in dm.message_ids)
        )
        result = last_result(provider)
        assert (result.content, result.is_error) == ("11", False)


async def test_no_press_before_the_timeout_is_a_denial(tmp_path: Path, fake: FakeDiscord) -> None:
    alice = fake.add_user("alice")
    dm = fake.open_dm(alice)
    async with running(tmp_path, fake, approval_timeout=0.3) as provider:
        provider.script(Call("fake__add", '{"a": 1, "b": 1}'))
        provider.script(Text("Fine, no sums."))
        await fake.user_sends(dm.id, alice, "add")
        asked = await fake.wait_for(lambda: question(fake, dm.id))
        assert asked is not None
        await fake.wait_for(lambda: asked.content == "fake__add: no answer in time, denied.")
        await wait_for(lambda: len(provider.requests) == 2)
        result = last_result(provider)
        assert result.is_error
        assert "nobody approved 'fake__add' within 0.3 seconds" in result.content
