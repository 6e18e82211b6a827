"""Approval in the web chat, end to end: the real Gateway from a config file, an MCP tool
(the fake server over stdio) marked ``approve = true``, a scripted model that calls it,
and the page's websocket pressing the buttons."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from runtime.history import ToolResultEntry
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.gateway_config import WEBCHAT_SECTION, fake_mcp_server, write_gateway_toml

Frame = dict[str, Any]


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.frames: list[Frame] = []

    async def expect(self, predicate: Callable[[Frame], bool], timeout: float = 10) -> Frame:
        for frame in self.frames:
            if predicate(frame):
                self.frames.remove(frame)
                return frame

        async def read() -> Frame:
            while True:
                msg = await self.ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                frame: Frame = json.loads(msg.data)
                if predicate(frame):
                    return frame
                self.frames.append(frame)

        return await asyncio.wait_for(read(), timeout)


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[Gateway, aiohttp.ClientSession]] = []

    async def start(
        approval_timeout: float = 30,
    ) -> tuple[Gateway, ScriptedProvider, Callable[[str], Any]]:
        path = write_gateway_toml(
            tmp_path,
            fake_mcp_server(),
            WEBCHAT_SECTION,
            agent_keys=f"approval_timeout = {approval_timeout}",
            shutdown_grace=0.5,
        )
        provider = ScriptedProvider("scripted")
        gateway = Gateway(load_config(path, env={}), providers={"main": provider})
        await gateway.start()
        session = aiohttp.ClientSession()
        started.append((gateway, session))

        async def page(client_id: str) -> Page:
            assert gateway.server is not None
            ws = await session.ws_connect(f"{gateway.server.url}/ws")
            opened = Page(ws, client_id)
            hello = {"type": "hello", "client_id": client_id, "name": client_id, "agent": "bot"}
            await ws.send_json(hello)
            await opened.expect(lambda f: f["type"] == "welcome")
            return opened

        return gateway, provider, page

    yield start
    for gateway, session in started:
        await session.close()
        await gateway.stop()


def last_result(provider: ScriptedProvider) -> ToolResultEntry:
    entries = [e for e in provider.requests[-1].messages if isinstance(e, ToolResultEntry)]
    return entries[-1]


async def test_the_owner_approves_with_the_page_button(gateway_factory: Any) -> None:
    _, provider, page = await gateway_factory()
    provider.script(Call("fake__add", '{"a": 20, "b": 22}'))
    provider.script(Text("It is 42."))
    owner, other = await page("owner1"), await page("other2")
    await owner.ws.send_json({"type": "message", "id": "m1", "text": "add", "agent": "bot"})
    asked = await owner.expect(lambda f: f["type"] == "approval")
    assert "fake__add" in asked["text"]
    await other.ws.send_json(
        {"type": "decision", "request_id": asked["request_id"], "approved": True}
    )
    refused = await other.expect(lambda f: f["type"] == "notice")
    assert refused["text"].startswith("Only the person who started this request")
    await owner.ws.send_json(
        {"type": "decision", "request_id": asked["request_id"], "approved": True}
    )
    assert (await owner.expect(lambda f: f["type"] == "notice"))["text"] == "Approved."
    settled = await owner.expect(lambda f: f["type"] == "approval_settled")
    assert (settled["id"], settled["text"]) == (asked["id"], "fake__add: approved by owner1.")
    await owner.expect(lambda f: f["type"] in ("message", "edit") and f["text"] == "It is 42.")
    result = last_result(provider)
    assert (result.content, result.is_error) == ("42", False)


async def test_an_unanswered_request_is_denied_by_timeout(gateway_factory: Any) -> None:
    _, provider, page = await gateway_factory(approval_timeout=0.3)
    provider.script(Call("fake__add", '{"a": 1, "b": 2}'))
    provider.script(Text("Not allowed, then."))
    owner = await page("owner1")
    await owner.ws.send_json({"type": "message", "id": "m1", "text": "add", "agent": "bot"})
    asked = await owner.expect(lambda f: f["type"] == "approval")
    settled = await owner.expect(lambda f: f["type"] == "approval_settled")
    assert (settled["id"], settled["text"]) == (
        asked["id"],
        "fake__add: no answer in time, denied.",
    )
    await owner.expect(
        lambda f: f["type"] in ("message", "edit") and f["text"] == "Not allowed, then."
    )
    result = last_result(provider)
    assert result.is_error
    assert "nobody approved 'fake__add' within 0.3 seconds" in result.content
