"""Shared builders for runtime tests: a runtime over a scripted provider, and waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from runtime.agent_runtime import AgentRuntime
from runtime.agents import AgentRegistry, AgentSpec
from runtime.events import RunEvent
from runtime.history import Speaker
from runtime.messages import UserMessage
from runtime.run import Run
from runtime.storage.base import Storage
from runtime.tools import Tool, builtin_tools
from tests.fakes.scripted_provider import ScriptedProvider

T = TypeVar("T")
TIMEOUT = 5.0


def make_runtime(
    provider: ScriptedProvider,
    *,
    storage: Storage | None = None,
    tools: Sequence[Tool] = (),
    **spec: object,
) -> AgentRuntime:
    registry = builtin_tools()
    for tool in tools:
        registry.register(tool)
    agent = AgentSpec(
        name="bot",
        provider=provider.name,
        model="m1",
        system_prompt="be brief",
        tools=("get_time", *(t.name for t in tools)),
        **spec,  # type: ignore[arg-type]
    )
    return AgentRuntime(AgentRegistry([agent], {provider.name: provider}, registry), storage)


def msg(text: str, who: str = "ann", message_id: str | None = None) -> UserMessage:
    return UserMessage(
        text=text, speaker=Speaker(name=who.title(), id=f"test:user:{who}"), message_id=message_id
    )


async def collect(run: Run) -> list[RunEvent]:
    return [e async for e in run.events()]


async def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a condition until it holds, failing after ``timeout`` seconds."""

    async def spin() -> None:
        while not condition():  # noqa: ASYNC110 (polls state that signals no event)
            await asyncio.sleep(0.002)

    await asyncio.wait_for(spin(), timeout)


async def within(awaitable: Awaitable[T], timeout: float = TIMEOUT) -> T:
    return await asyncio.wait_for(awaitable, timeout)


class RunRecorder:
    """A run listener that keeps every run the runtime starts."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.runs: list[Run] = []
        runtime.add_run_listener(self.runs.append)

    async def nth(self, n: int) -> Run:
        await wait_for(lambda: len(self.runs) >= n)
        return self.runs[n - 1]
