"""MCP tools end to end: the real Gateway built from a config file with
``[[agents.bot.mcp]]`` entries, the fake MCP server (written with the SDK's server side)
over stdio and over streamable HTTP, a scripted model that calls its tools, and the
in-memory platform showing what the user sees."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from gateway.describe import describe
from gateway.errors import ConfigError
from gateway.wiring import collect_secrets
from runtime.errors import AgentRuntimeError
from runtime.events import ToolCallsStart
from runtime.history import ToolResultEntry, entry_from_dict, entry_to_dict
from runtime.mcp_tools import McpServerSpec, McpToolSource, tool_name_for
from runtime.providers.anthropic import to_messages as anthropic_messages
from runtime.providers.base import ModelRequest
from runtime.run import Run
from tests.fakes.mcp_server import PIXEL, http_server, http_server_process, stdio_command
from tests.fakes.memory_adapter import MemoryAdapter
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.pipeline_helpers import dm
from tests.runtime_helpers import wait_for

BASE = """
default_agent = "bot"
shutdown_grace = 0.5

[server]
host = "127.0.0.1"
port = 0

[storage]
path = {db}

[providers.scripted]
kind = "echo"

[agents.bot]
provider = "scripted"
model = "m1"
tool_timeout = 5
"""


def stdio_entry(name: str = "fake", **extra: Any) -> str:
    command, args = stdio_command()
    keys: dict[str, Any] = {
        "name": name,
        "command": command,
        "args": args,
        "cwd": str(Path(__file__).resolve().parents[1]),
    }
    keys.update(extra)
    lines = ["[[agents.bot.mcp]]"] + [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


@dataclass(kw_only=True, slots=True)
class McpRig:
    gateway: Gateway
    adapter: MemoryAdapter
    provider: ScriptedProvider

    def source(self, name: str) -> McpToolSource:
        return next(s for s in self.gateway.mcp.all() if s.name == name)

    async def ask(self, text: str) -> list[str]:
        """Send a DM and wait until its reply has landed; returns the new messages."""
        message = dm(text)
        chat = message.target.chat_id
        before, asked = len(self.adapter.chat(chat)), len(self.provider.requests)
        await self.adapter.deliver(message)
        runtime, pipeline = self.gateway.runtime, self.gateway.pipeline
        assert runtime is not None
        assert pipeline is not None
        if not text.startswith("/"):
            await wait_for(lambda: len(self.provider.requests) > asked)
        await wait_for(lambda: not runtime.active_runs() and not pipeline.renderers, timeout=15)
        await self.adapter.wait_for(lambda: len(self.adapter.chat(chat)) > before)
        return self.adapter.chat(chat)[before:]


Starter = Callable[..., Any]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Starter]:
    rigs: list[McpRig] = []

    @asynccontextmanager
    async def noop() -> AsyncIterator[None]:
        yield

    async def start_gateway(entries: str, env: dict[str, str] | None = None) -> McpRig:
        path = tmp_path / "gateway.toml"
        db = json.dumps(str(tmp_path / "gateway.db"))
        path.write_text(BASE.format(db=db) + textwrap.dedent(entries), encoding="utf-8")
        config = load_config(path, env=env or {})
        provider = ScriptedProvider("scripted")
        adapter = MemoryAdapter()
        gateway = Gateway(config, adapters={"mem": adapter}, providers={"scripted": provider})
        await gateway.start()
        await adapter.connected()
        rig = McpRig(gateway=gateway, adapter=adapter, provider=provider)
        rigs.append(rig)
        return rig

    yield start_gateway
    for rig in rigs:
        await rig.gateway.stop()
        rig.adapter.stop()


def tool_names(request: ModelRequest) -> list[str]:
    return sorted(spec.name for spec in request.tools)


def tool_results(request: ModelRequest) -> list[ToolResultEntry]:
    return [e for e in request.messages if isinstance(e, ToolResultEntry)]


async def test_stdio_tools_are_listed_namespaced_and_called(start: Starter) -> None:
    rig = await start(stdio_entry(env={"FAKE_MCP_MARK": "from-config"}))
    rig.provider.script(Call("fake__add", '{"a": 2, "b": 40}'), Call("fake__env_mark"))
    rig.provider.script(Text("The sum is 42."))
    shown = await rig.ask("add 2 and 40")
    assert shown[-1] == "The sum is 42."
    first, second = rig.provider.requests
    assert {"fake__add", "fake__echo", "fake__crash", "get_time"} <= set(tool_names(first))
    add = next(spec for spec in first.tools if spec.name == "fake__add")
    assert add.parameters["required"] == ["a", "b"]
    assert add.description == "Add two integers."
    results = tool_results(second)
    assert [(r.name, r.content, r.is_error) for r in results] == [
        ("fake__add", "42", False),
        ("fake__env_mark", "from-config", False),
    ]


async def test_http_server_gets_headers_interpolated_from_the_environment(
    start: Starter,
) -> None:
    async with http_server() as url:
        entry = f"""
        [[agents.bot.mcp]]
        name = "web"
        url = "{url}"
        headers = {{ X-Test-Token = "${{MCP_TOKEN}}" }}
        deny = ["crash", "slow"]
        """
        rig = await start(entry, env={"MCP_TOKEN": "sekrit-123"})
        rig.provider.script(Call("web__whoami"), Call("web__picture"))
        rig.provider.script(Text("done"))
        assert (await rig.ask("who am I?"))[-1] == "done"
        first, second = rig.provider.requests
        names = tool_names(first)
        assert "web__whoami" in names
        assert "web__crash" not in names
        assert "web__slow" not in names
        whoami, picture = tool_results(second)
        assert whoami.content == "sekrit-123"
        assert picture.content.startswith("[image: image/png")
        (image,) = picture.images
        assert image.media_type == "image/png"
        assert base64.b64decode(image.data_base64) == PIXEL
        blocks = anthropic_messages([picture])[0]["content"][0]["content"]
        assert [b["type"] for b in blocks] == ["text", "image"]
        assert blocks[1]["source"]["data"] == image.data_base64
        assert entry_from_dict(entry_to_dict(picture)) == picture  # storage keeps it


async def test_allow_list_keeps_only_the_named_tools(start: Starter) -> None:
    rig = await start(stdio_entry(allow=["add", "ech*"], deny=["echo"]))
    rig.provider.script(Text("hi"))
    await rig.ask("hello")
    assert tool_names(rig.provider.requests[0]) == ["fake__add", "get_time"]


async def test_a_slow_tool_times_out_with_a_clear_result(start: Starter) -> None:
    rig = await start(stdio_entry(timeout=0.3))
    rig.provider.script(Call("fake__slow", '{"seconds": 30}'))
    rig.provider.script(Text("gave up"))
    assert (await rig.ask("be slow"))[-1] == "gave up"
    (result,) = tool_results(rig.provider.requests[1])
    assert result.is_error
    assert "did not finish within 0.3 seconds" in result.content


async def test_a_server_crash_mid_call_is_reported_and_the_server_restarts(
    start: Starter,
) -> None:
    rig = await start(stdio_entry())
    source = rig.source("fake")
    assert source.connects == 1
    rig.provider.script(Call("fake__crash"), Call("get_time"))
    rig.provider.script(Text("it crashed"))
    assert (await rig.ask("crash it"))[-1] == "it crashed"
    crash, clock = tool_results(rig.provider.requests[1])
    assert crash.is_error
    assert "'fake'" in crash.content
    assert not clock.is_error  # the other call of the batch was not disturbed
    await wait_for(lambda: source.connects == 2 and source.state == "ready", timeout=15)
    rig.provider.script(Call("fake__add", '{"a": 1, "b": 1}'))
    rig.provider.script(Text("back"))
    assert (await rig.ask("again"))[-1] == "back"
    result = tool_results(rig.provider.requests[3])[-1]
    assert (result.name, result.content, result.is_error) == ("fake__add", "2", False)


async def test_tools_of_a_down_server_are_withdrawn_and_reported(start: Starter) -> None:
    rig = await start(stdio_entry(name="broken", args=["-c", "raise SystemExit(1)"]))
    source = rig.source("broken")
    assert source.state != "ready"
    shown = await rig.ask("/tools")
    assert "get_time" in shown[-1]
    assert "broken: unavailable" in shown[-1]
    rig.provider.script(Text("no tools, still fine"))
    assert (await rig.ask("hello"))[-1] == "no tools, still fine"
    assert tool_names(rig.provider.requests[0]) == ["get_time"]


async def test_tools_command_lists_what_the_agent_can_use(start: Starter) -> None:
    rig = await start(stdio_entry(approve=["crash"]))
    (text,) = await rig.ask("/tools")
    assert "- fake__add: Add two integers." in text
    assert "- fake__crash (asks for approval)" in text
    assert "fake: ready, 8 tools" in text


def test_an_mcp_entry_needs_exactly_one_transport(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    entry = '[[agents.bot.mcp]]\nname = "x"\ncommand = "srv"\nurl = "http://127.0.0.1:1/mcp"\n'
    path.write_text(BASE.format(db='"db.sqlite"') + entry, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "agents.bot.mcp" in str(caught.value)
    assert "set command (a stdio server) or url" in str(caught.value)


async def test_an_http_server_killed_mid_call_fails_the_call_at_once(start: Starter) -> None:
    async with http_server_process() as (url, proc):
        rig = await start(f'[[agents.bot.mcp]]\nname = "web"\nurl = "{url}"\n')
        source = rig.source("web")
        assert source.state == "ready"
        runtime = rig.gateway.runtime
        assert runtime is not None
        started: list[Run] = []
        runtime.add_run_listener(started.append)
        rig.provider.script(Call("web__slow", '{"seconds": 30}'))
        rig.provider.script(Text("the server went away"))
        await rig.adapter.deliver(dm("be slow"))
        await wait_for(lambda: bool(started))
        calling = asyncio.create_task(first_event(started[0], ToolCallsStart))
        await asyncio.wait_for(calling, 5)
        proc.kill()
        done = await asyncio.wait_for(started[0].wait(), 4)  # well before tool_timeout (5 s)
        assert done.reason == "text"
        (result,) = tool_results(rig.provider.requests[1])
        assert result.is_error
        assert "'web'" in result.content
        assert "did not finish within" not in result.content, result.content
        await wait_for(lambda: source.state != "ready", timeout=10)
        shown = await rig.ask("/tools")
        assert "web: unavailable" in shown[-1]
        assert "web__slow" not in shown[-1]


async def first_event(run: Run, kind: type[object]) -> None:
    async for event in run.events():
        if isinstance(event, kind):
            return


def test_approve_must_name_a_tool_of_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    config = BASE.format(db='"db.sqlite"').replace(
        "tool_timeout = 5", 'tool_timeout = 5\napprove = ["get_time", "files__write", "shell"]'
    )
    path.write_text(config + stdio_entry(name="files"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "'shell' is neither one of this agent's tools" in str(caught.value)
    path.write_text(config.replace(', "shell"', "") + stdio_entry(name="files"), "utf-8")
    assert load_config(path, env={}).agents["bot"].approve == ["get_time", "files__write"]


def test_mcp_header_and_env_values_are_redacted_from_logs(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    entry = stdio_entry(env={"API_KEY": "env-secret-123"}) + textwrap.dedent(
        """
        [[agents.bot.mcp]]
        name = "web"
        url = "http://127.0.0.1:1/mcp"
        headers = { Authorization = "Bearer ${TOKEN}" }
        """
    )
    path.write_text(BASE.format(db='"db.sqlite"') + entry, encoding="utf-8")
    secrets = collect_secrets(load_config(path, env={"TOKEN": "tok-456789"}))
    assert {"env-secret-123", "Bearer tok-456789"} <= set(secrets)


async def test_a_changed_tool_list_is_picked_up_without_waiting_for_the_probe(
    start: Starter,
) -> None:
    rig = await start(stdio_entry())
    source = rig.source("fake")
    assert source.spec.ping_interval > 10  # so only the notification can explain it
    rig.provider.script(Call("fake__grow", '{"name": "sprout"}'))
    rig.provider.script(Text("grown"))
    assert (await rig.ask("grow a tool"))[-1] == "grown"
    await wait_for(lambda: any(t.name == "fake__sprout" for t in source.tools()))
    rig.provider.script(Call("fake__sprout"))
    rig.provider.script(Text("used it"))
    assert (await rig.ask("use it"))[-1] == "used it"
    assert "fake__sprout" in tool_names(rig.provider.requests[2])
    assert tool_results(rig.provider.requests[3])[-1].content == "I am sprout"


def test_check_lists_the_mcp_servers_and_approvals_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    config = BASE.format(db='"db.sqlite"').replace(
        "tool_timeout = 5", 'tool_timeout = 5\napprove = ["files__write"]'
    )
    http = '[[agents.bot.mcp]]\nname = "web"\nurl = "http://127.0.0.1:1/mcp"\n'
    http += 'headers = { Authorization = "Bearer hidden-token-1" }\n'
    path.write_text(config + stdio_entry(name="files", env={"K": "hidden-env-2"}) + http, "utf-8")
    text = describe(load_config(path, env={}))
    assert "MCP servers [files (stdio), web (http)], asks before [files__write]" in text
    assert "hidden" not in text


def test_names_filters_and_approval_of_a_server_spec() -> None:
    spec = McpServerSpec(name="fs", command="srv", allow=("read_*", "list"), deny=("read_secret",))
    assert [t for t in ("read_file", "read_secret", "list", "write") if spec.allows(t)] == [
        "read_file",
        "list",
    ]
    assert not spec.approves("read_file")
    assert McpServerSpec(name="fs", url="http://x/mcp", approve=True).approves("anything")
    assert McpServerSpec(name="fs", command="srv", approve=("rm",)).approves("rm")
    assert tool_name_for("fs", "read.file v2") == "fs__read_file_v2"
    assert len(tool_name_for("s" * 40, "t" * 40)) == 64
    with pytest.raises(AgentRuntimeError, match="exactly one of command or url"):
        McpServerSpec(name="fs")
