"""What the runtime needs to know about one MCP server, and how its tools are named."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.errors import AgentRuntimeError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
SEPARATOR = "__"
MAX_NAME = 64  # OpenAI's limit on function names


@dataclass(frozen=True, kw_only=True, slots=True)
class McpServerSpec:
    """A stdio server (``command``) or a streamable-HTTP server (``url``).

    ``allow``/``deny`` are shell patterns over the server's own tool names (deny wins;
    an empty allow list allows all). ``approve`` is True for every tool of the server,
    or the tool names that need the owner's approval.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    approve: bool | tuple[str, ...] = False
    timeout: float = 60.0
    connect_timeout: float = 30.0
    ping_interval: float = 15.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise AgentRuntimeError(f"MCP server {self.name!r} needs exactly one of command or url")

    def allows(self, tool: str) -> bool:
        if any(fnmatch.fnmatchcase(tool, p) for p in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(tool, p) for p in self.allow)

    def approves(self, tool: str) -> bool:
        if isinstance(self.approve, bool):
            return self.approve
        return tool in self.approve


def tool_name_for(server: str, tool: str) -> str:
    """``server__tool``, reduced to the characters every provider accepts."""
    name = _UNSAFE.sub("_", f"{server}{SEPARATOR}{tool}")
    return name[:MAX_NAME]
