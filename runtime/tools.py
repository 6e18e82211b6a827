"""Tools an agent may call: async callables with a JSON schema, looked up per agent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.errors import AgentRuntimeError
from runtime.history import Image


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolOutput:
    """A result with images besides its text (a handler may also return plain text)."""

    text: str
    images: tuple[Image, ...] = ()


ToolHandler = Callable[[dict[str, Any]], Awaitable[str | ToolOutput]]


class ToolFailed(AgentRuntimeError):
    """A tool's own failure; ``str(exc)`` is the sentence the model reads."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    handler: ToolHandler
    timeout: float | None = None  # seconds; None: the agent's ``tool_timeout``
    approve: bool = False  # ask the conversation's owner before every call
    source: str = "built-in"


class ToolSource(Protocol):
    """Tools that come and go at run time (an MCP server): read before each model call."""

    name: str

    def tools(self) -> Sequence[Tool]:
        """The tools usable right now; empty while the source is unavailable."""
        ...

    def describe(self) -> str:
        """One line for ``/tools``: the source's state."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSpec:
    """What a provider sends to the model: no handler."""

    name: str
    description: str
    parameters: Mapping[str, Any]


class ToolRegistry:
    """Every tool the process knows; an agent names the ones it may use."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def for_agent(self, names: Iterable[str]) -> dict[str, Tool]:
        """The agent's tools by name; unknown names raise so config errors surface early."""
        selected: dict[str, Tool] = {}
        for name in names:
            tool = self._tools.get(name)
            if tool is None:
                known = ", ".join(self.names()) or "none"
                raise KeyError(f"unknown tool {name!r} (known tools: {known})")
            selected[name] = tool
        return selected


def spec_of(tool: Tool) -> ToolSpec:
    return ToolSpec(name=tool.name, description=tool.description, parameters=tool.parameters)


async def _get_time(args: dict[str, Any]) -> str:
    tz_name = args.get("timezone")
    now = dt.datetime.now(dt.UTC)
    if tz_name and tz_name != "UTC":
        try:
            from zoneinfo import ZoneInfo

            return now.astimezone(ZoneInfo(str(tz_name))).isoformat(timespec="seconds")
        except (KeyError, ValueError) as exc:
            raise ValueError(f"unknown timezone {tz_name!r}") from exc
    return now.isoformat(timespec="seconds")


GET_TIME = Tool(
    name="get_time",
    description="Current date and time (ISO 8601). Optional IANA timezone, default UTC.",
    parameters={
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "e.g. Europe/Paris"}},
    },
    handler=_get_time,
)


def builtin_tools() -> ToolRegistry:
    return ToolRegistry([GET_TIME])
