"""One MCP server as a tool source: a supervisor task keeps a client session alive.

How the pieces interact. ``start`` creates the supervisor task, which owns the SDK
``Client`` (its anyio task group must be entered and left by one task): it connects,
lists the tools, publishes them, then watches the connection (a probe every
``ping_interval`` seconds, or at once when a call saw the transport fail). When the
connection is lost the tools are withdrawn, so the next model call is not offered them,
and the supervisor reconnects with exponential backoff (reset after a good session).
Tool calls run in the callers' tasks through the shared session; a call on a server that
is down fails at once with a sentence for the model, never waiting for the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import mcp_types as types
from mcp import Client
from mcp.client import IncomingMessage
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from runtime.backoff import Backoff
from runtime.history import Image
from runtime.mcp_tools.spec import McpServerSpec, tool_name_for
from runtime.tools import Tool, ToolFailed, ToolOutput

log = logging.getLogger(__name__)

State = Literal["stopped", "connecting", "ready", "down"]
PROBE_TIMEOUT = 5.0


class McpToolSource:
    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.state: State = "stopped"
        self.detail = ""
        self.connects = 0  # sessions opened so far (a test sees reconnects)
        self._tools: list[Tool] = []
        self._client: Client | None = None
        self._suspect = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- ToolSource ------------------------------------------------------------------------

    def tools(self) -> Sequence[Tool]:
        return list(self._tools) if self.state == "ready" else []

    def describe(self) -> str:
        if self.state == "ready":
            return f"{self.name}: ready, {len(self._tools)} tools"
        return f"{self.name}: unavailable ({self.detail or self.state})"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-{self.name}")

    async def wait_attempted(self, timeout: float) -> None:
        """Wait (bounded) for the first connection attempt to succeed or fail."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), timeout)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.state = "stopped"

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            self.state = "connecting"
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.detail = f"restarting after: {_describe(exc)}"
                log.warning("MCP server %s failed: %s", self.name, _describe(exc))
            finally:
                self._withdraw()
            if time.monotonic() - started > self.spec.backoff_max:
                attempt = 0  # a session that lasted is a fresh start, not a retry
            attempt += 1
            delay = Backoff(base=self.spec.backoff_base, cap=self.spec.backoff_max).delay(attempt)
            log.info("MCP server %s: reconnect attempt %d in %.1fs", self.name, attempt, delay)
            self.detail = f"restarting in {delay:.0f}s"
            await asyncio.sleep(delay)

    def _withdraw(self) -> None:
        self.state = "down"
        self._tools = []
        self._client = None
        self._attempted.set()

    async def _session(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            client = Client(self._transport(stack), mode="legacy", message_handler=self._on_message)
            async with asyncio.timeout(self.spec.connect_timeout):
                await stack.enter_async_context(client)
                listed = await self._list(client)
            self._client = client
            self._tools = [self._tool(t) for t in listed if self.spec.allows(t.name)]
            self._suspect.clear()
            self.state, self.detail = "ready", ""
            self.connects += 1
            self._attempted.set()
            log.info("MCP server %s ready with %d tools", self.name, len(self._tools))
            await self._watch(client)

    def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        spec = self.spec
        if spec.url is not None:
            http = create_mcp_http_client(headers=dict(spec.headers))
            stack.push_async_callback(http.aclose)
            return streamable_http_client(spec.url, http_client=http)
        assert spec.command is not None
        return StdioServerParameters(
            command=spec.command, args=list(spec.args), env=dict(spec.env) or None, cwd=spec.cwd
        )

    async def _on_message(self, message: IncomingMessage) -> None:
        """A changed tool list, or trouble the session saw: probe (and re-list) now."""
        if isinstance(message, types.ToolListChangedNotification | Exception):
            self._suspect.set()

    @staticmethod
    async def _list(client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a bound on pages, against a server that loops
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def _watch(self, client: Client) -> None:
        """Return when the connection is gone, probed on a timer or at once when a call
        saw the transport fail. The probe re-lists the tools (``ping`` is deprecated in
        the 2026 protocol), so a server's changed tool set is picked up too."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._suspect.wait(), self.spec.ping_interval)
            self._suspect.clear()
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    listed = await self._list(client)
            except (MCPError, TimeoutError, OSError) as exc:
                raise ConnectionError(f"the server stopped answering ({_describe(exc)})") from exc
            self._tools = [self._tool(t) for t in listed if self.spec.allows(t.name)]

    # -- calls -----------------------------------------------------------------------------

    def _tool(self, listed: types.Tool) -> Tool:
        remote = listed.name

        async def handler(args: dict[str, Any]) -> ToolOutput:
            return await self.call(remote, args)

        return Tool(
            name=tool_name_for(self.name, remote),
            description=listed.description or listed.title or remote,
            parameters=listed.input_schema or {"type": "object", "properties": {}},
            handler=handler,
            timeout=self.spec.timeout,
            approve=self.spec.approves(remote),
            source=f"mcp:{self.name}",
        )

    async def call(self, remote: str, args: dict[str, Any]) -> ToolOutput:
        client = self._client
        if client is None or self.state != "ready":
            raise ToolFailed(
                f"The tool server {self.name!r} is unavailable right now "
                f"({self.detail or self.state}); try again later or do without it."
            )
        try:
            result = await client.call_tool(remote, args)
        except MCPError as exc:
            self._suspect.set()  # maybe the transport; the supervisor pings to find out
            raise ToolFailed(
                f"The tool server {self.name!r} failed during the call ({exc}); "
                "it is restarted if it died."
            ) from exc
        except Exception as exc:  # transport errors surface as many types; probe the link
            self._suspect.set()
            raise ToolFailed(
                f"The tool server {self.name!r} failed during the call ({_describe(exc)})."
            ) from exc
        text = result_text(result)
        if result.is_error:
            raise ToolFailed(text or f"The tool {remote!r} reported an error.")
        images = tuple(
            Image(media_type=block.mime_type, data_base64=block.data)
            for block in result.content
            if isinstance(block, types.ImageContent)
        )
        return ToolOutput(text=text, images=images)


def result_text(result: types.CallToolResult) -> str:
    """Text blocks verbatim; other blocks named so the model knows they were there."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            parts.append(f"[image: {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        else:
            parts.append(f"[{block.type} content]")
    return "\n".join(parts)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
