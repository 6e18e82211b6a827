"""``/tools``: what the conversation's agent can use right now."""

from __future__ import annotations

from runtime.agents import Agent


def tools_text(agent: Agent) -> str:
    """Every tool offered to the model now (MCP tools only while their server is up),
    marked when it asks for approval, then each MCP server's state."""
    tools = agent.available_tools()
    if not tools and not agent.sources:
        return f"{agent.name} has no tools."
    lines = [f"Tools {agent.name} can use now:" if tools else f"{agent.name} has no tools now."]
    for name in sorted(tools):
        tool = tools[name]
        mark = " (asks for approval)" if tool.approve else ""
        lines.append(f"- {name}{mark}: {_first_line(tool.description)}")
    if agent.sources:
        lines.append("Tool servers:")
        lines += [f"- {source.describe()}" for source in agent.sources]
    return "\n".join(lines)


def _first_line(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
