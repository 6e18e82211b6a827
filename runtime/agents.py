"""Agents: a named model, prompt and tool set, registered from config objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from runtime.errors import AgentRuntimeError, UnknownAgentError
from runtime.providers.base import ModelProvider
from runtime.tools import Tool, ToolRegistry, ToolSource, ToolSpec, spec_of


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentSpec:
    name: str
    provider: str
    model: str
    system_prompt: str = ""
    max_iterations: int = 16
    tools: tuple[str, ...] = ()
    title_model: str | None = None
    compact_threshold: int | None = None
    compact_retained_turns: int = 2
    approve: tuple[str, ...] = ()  # tool names (MCP ones namespaced) that need approval
    tool_timeout: float = 60.0
    approval_timeout: float = 300.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Agent:
    """A spec resolved against the process's providers and tools."""

    spec: AgentSpec
    provider: ModelProvider
    tools: Mapping[str, Tool] = field(default_factory=dict)
    sources: tuple[ToolSource, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    def available_tools(self) -> dict[str, Tool]:
        """Built-in tools plus what each source offers right now, approval flags applied.
        Read once per model call, so the model is offered exactly what can be invoked."""
        found = dict(self.tools)
        for source in self.sources:
            for tool in source.tools():
                found.setdefault(tool.name, tool)
        return {
            name: replace(tool, approve=True)
            if name in self.spec.approve and not tool.approve
            else tool
            for name, tool in found.items()
        }

    def tool_specs(self) -> list[ToolSpec]:
        return [spec_of(tool) for tool in self.available_tools().values()]


class AgentRegistry:
    def __init__(
        self,
        specs: Iterable[AgentSpec],
        providers: Mapping[str, ModelProvider],
        tools: ToolRegistry,
        sources: Mapping[str, Sequence[ToolSource]] | None = None,
    ) -> None:
        """``sources``: each agent's dynamic tool sources (MCP servers), by agent name."""
        self._agents: dict[str, Agent] = {}
        for spec in specs:
            agent = self._resolve(spec, providers, tools)
            extra = tuple((sources or {}).get(spec.name, ()))
            self._agents[spec.name] = replace(agent, sources=extra) if extra else agent

    @staticmethod
    def _resolve(
        spec: AgentSpec, providers: Mapping[str, ModelProvider], tools: ToolRegistry
    ) -> Agent:
        if spec.compact_retained_turns < 1:
            raise AgentRuntimeError(
                f"agent {spec.name!r}: compact_retained_turns must be at least 1"
            )
        if spec.tool_timeout <= 0 or spec.approval_timeout <= 0:
            raise AgentRuntimeError(f"agent {spec.name!r}: timeouts must be positive")
        if spec.max_iterations < 1:
            raise AgentRuntimeError(f"agent {spec.name!r}: max_iterations must be at least 1")
        provider = providers.get(spec.provider)
        if provider is None:
            known = ", ".join(sorted(providers)) or "none"
            raise AgentRuntimeError(
                f"agent {spec.name!r} uses provider {spec.provider!r}, which is not "
                f"configured (configured providers: {known})"
            )
        try:
            selected = tools.for_agent(spec.tools)
        except KeyError as exc:
            raise AgentRuntimeError(f"agent {spec.name!r}: {exc.args[0]}") from exc
        return Agent(spec=spec, provider=provider, tools=selected)

    def get(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            raise UnknownAgentError(f"no agent named {name!r}")
        return agent

    def names(self) -> list[str]:
        return list(self._agents)

    def __contains__(self, name: object) -> bool:
        return name in self._agents
