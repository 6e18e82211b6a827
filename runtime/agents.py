"""Agents: a named model, prompt and tool set, registered from config objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from runtime.errors import AgentRuntimeError, UnknownAgentError
from runtime.providers.base import ModelProvider
from runtime.tools import Tool, ToolRegistry, ToolSpec, spec_of


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


@dataclass(frozen=True, kw_only=True, slots=True)
class Agent:
    """A spec resolved against the process's providers and tools."""

    spec: AgentSpec
    provider: ModelProvider
    tools: Mapping[str, Tool] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def tool_specs(self) -> list[ToolSpec]:
        return [spec_of(tool) for tool in self.tools.values()]


class AgentRegistry:
    def __init__(
        self,
        specs: Iterable[AgentSpec],
        providers: Mapping[str, ModelProvider],
        tools: ToolRegistry,
    ) -> None:
        self._agents: dict[str, Agent] = {}
        for spec in specs:
            self._agents[spec.name] = self._resolve(spec, providers, tools)

    @staticmethod
    def _resolve(
        spec: AgentSpec, providers: Mapping[str, ModelProvider], tools: ToolRegistry
    ) -> Agent:
        if spec.compact_retained_turns < 1:
            raise AgentRuntimeError(
                f"agent {spec.name!r}: compact_retained_turns must be at least 1"
            )
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
