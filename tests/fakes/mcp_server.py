"""A small MCP server written with the SDK's server side, run over stdio or HTTP.

``python -m tests.fakes.mcp_server stdio`` serves on stdin/stdout;
``python -m tests.fakes.mcp_server http`` binds 127.0.0.1 port 0 and prints
``PORT <n>`` on stdout once it listens. Tools: ``add``, ``echo``, ``slow`` (sleeps, for
timeouts), ``crash`` (the process exits mid-call), ``picture`` (an image result) and
``whoami`` (HTTP: the ``X-Test-Token`` header it received). ``FAKE_MCP_MARK`` in the
environment is echoed by ``env_mark`` so tests can check the configured ``env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.utilities.types import Image

# A 1x1 transparent PNG.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63600000020000050001e226059f0000000049454e44ae426082"
)

server = MCPServer("fake-tools")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Echo the text back.")
def echo(text: str) -> str:
    return f"echo: {text}"


@server.tool(description="Sleep, then answer.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool(description="Exit the server process in the middle of the call.")
def crash() -> str:
    os._exit(3)


@server.tool(description="A one-pixel picture.")
def picture() -> Image:
    return Image(data=PIXEL, format="png")


@server.tool(description="Add a tool named NAME, then tell the client the list changed.")
async def grow(name: str, ctx: Context) -> str:
    def grown() -> str:
        return f"I am {name}"

    server.add_tool(grown, name=name, description=f"A tool added at run time ({name}).")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@server.tool(description="The value of FAKE_MCP_MARK in the server's environment.")
def env_mark() -> str:
    return os.environ.get("FAKE_MCP_MARK", "")


@server.tool(description="The X-Test-Token header of this HTTP request.")
def whoami(ctx: Context) -> str:
    request = getattr(ctx.request_context, "request", None)
    headers = getattr(request, "headers", None)
    return str(headers.get("x-test-token", "")) if headers is not None else ""


async def _serve_http() -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = server.streamable_http_app(stateless_http=False)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    config_loaded = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:  # noqa: ASYNC110 (uvicorn offers no started event)
        await asyncio.sleep(0.01)
    print(f"PORT {port}", flush=True)  # noqa: T201 (the parent reads it)
    await config_loaded


ROOT = Path(__file__).resolve().parents[2]


def stdio_command() -> tuple[str, list[str]]:
    """``command`` and ``args`` that start this server over stdio."""
    return sys.executable, ["-m", "tests.fakes.mcp_server", "stdio"]


@contextlib.asynccontextmanager
async def http_server_process() -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """This server over streamable HTTP in a child process: its ``/mcp`` URL and the
    process (a test kills it to crash the server)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.mcp_server",
        "http",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"the fake MCP server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/mcp", proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    """This server over streamable HTTP in a child process; yields its ``/mcp`` URL."""
    async with http_server_process() as (url, _):
        yield url


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "http":
        asyncio.run(_serve_http())
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
