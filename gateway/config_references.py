"""Loader pass 5: names that refer to each other.

An agent names its provider and tools, adapters and bindings name agents, and
``default_agent`` names one too; each reference must resolve. A problem suggests the
closest defined name, but never for a value that came from the environment (it might be
a secret). It runs on the resolved document whether or not validation passed, so a
schema error and a dangling name are reported in the same run.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from gateway.config_checks import join_path, nonblank, tables
from gateway.errors import Problem

Table = dict[str, Any]

# Which match keys mean something on each platform (webchat has no fixed scheme).
_BINDING_KEYS = {
    "telegram": ("chat",),
    "discord": ("guild", "channel"),
    "slack": ("team", "channel"),
}


def _names(table: object) -> list[str] | None:
    """The names a table defines: none when it is absent, None (unknown) when malformed."""
    if table is None:
        return []
    return list(table) if isinstance(table, dict) else None


class _References:
    """Checks names against the tables that define them, collecting problems."""

    def __init__(self, data: Table, sources: Mapping[str, str], tools: Collection[str]) -> None:
        self.sources = sources
        self.problems: list[Problem] = []
        agents, providers = data.get("agents"), data.get("providers")
        self.known: dict[str, list[str] | None] = {
            "agent": _names(agents),
            "provider": _names(providers),
            "tool": list(tools),
        }

    def check(self, path: str, name: object, what: str) -> None:
        known = self.known[what]
        if not isinstance(name, str) or known is None or name in known:
            return
        variable = self.sources.get(path)
        # A value from the environment may be anything, even a secret: never echo it.
        close = difflib.get_close_matches(name, known, n=1) if variable is None else []
        message = (
            f'no {what} named "{name}"'
            if variable is None
            else (f"no {what} has the name given by ${{{variable}}}")
        )
        if close:
            message += f'; did you mean "{close[0]}"?'
        elif known:
            message += "; choose one of: " + ", ".join(known)
        else:
            message += f"; define one first ([{what}s.NAME])"
        self.problems.append(Problem(path=path, message=message))


def cross_check(data: Table, sources: Mapping[str, str], tools: Collection[str]) -> list[Problem]:
    """Problems with names that refer to what the file does not define (or defines
    under another name), and binding keys the adapter does not match on."""
    refs = _References(data, sources, tools)
    refs.check("default_agent", data.get("default_agent"), "agent")
    for name, agent in tables(data.get("agents")):
        where = f"agents.{join_path('', name)}"
        refs.check(f"{where}.provider", agent.get("provider"), "provider")
        agent_tools = agent.get("tools")
        for index, tool in enumerate(agent_tools if isinstance(agent_tools, list) else []):
            refs.check(f"{where}.tools[{index}]", tool, "tool")
    for name, section in tables(data.get("adapters")):
        refs.check(f"adapters.{join_path('', name)}.agent", nonblank(section.get("agent")), "agent")
    bindings = data.get("bindings")
    for index, binding in enumerate(bindings if isinstance(bindings, list) else []):
        if isinstance(binding, dict):
            refs.check(f"bindings[{index}].agent", binding.get("agent"), "agent")
            refs.problems.extend(_binding_keys(f"bindings[{index}]", binding))
    return refs.problems


def _binding_keys(where: str, binding: Table) -> Iterator[Problem]:
    adapter = binding.get("adapter")
    allowed = _BINDING_KEYS.get(adapter) if isinstance(adapter, str) else None
    for key in ("chat", "guild", "channel", "team"):
        if allowed is not None and key in binding and key not in allowed:
            message = f"{adapter} bindings match on {' or '.join(allowed)}; remove {key}"
            yield Problem(path=f"{where}.{key}", message=message)
