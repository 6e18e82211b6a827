"""Tools from MCP servers (the official ``mcp`` SDK), stdio or streamable HTTP.

The package is not named ``mcp`` so it can never shadow the SDK it imports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from runtime.mcp_tools.server import McpToolSource
from runtime.mcp_tools.spec import McpServerSpec, tool_name_for

__all__ = ["McpServerSpec", "McpServers", "McpToolSource", "tool_name_for"]


class McpServers:
    """Every agent's MCP servers: started together, closed together (owner: the app)."""

    def __init__(self, specs: Mapping[str, Sequence[McpServerSpec]]) -> None:
        self.by_agent: dict[str, list[McpToolSource]] = {
            agent: [McpToolSource(spec) for spec in servers] for agent, servers in specs.items()
        }

    def all(self) -> list[McpToolSource]:
        return [source for sources in self.by_agent.values() for source in sources]

    async def start(self, wait: float = 10.0) -> None:
        """Start every supervisor and wait (at most ``wait`` seconds) for each first
        attempt, so the first message finds the tools listed; a server that is slow or
        failing never holds up the start past that."""
        for source in self.all():
            source.start()
        await asyncio.gather(*(s.wait_attempted(wait) for s in self.all()))

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in reversed(self.all())))
