"""An in-process ModelProvider that plays scripted replies, for runtime tests.

The runtime's provider seam is a Protocol, so this is a second implementation of it, not
a mock: each call pops the next script and streams its steps. ``Gate`` steps hold the
stream open until the test releases them, so races are arranged, not slept into.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from runtime.errors import ProviderError
from runtime.prompts import COMPACT_PROMPT, TITLE_PROMPT
from runtime.providers.base import (
    ModelRequest,
    ProviderEvent,
    TextChunk,
    ThinkingChunk,
    ToolCallReady,
    ToolCallStarted,
    UsageReport,
)


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Think:
    text: str


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    arguments: str = "{}"
    id: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt: int
    completion: int = 1


@dataclass(slots=True)
class Gate:
    """The stream waits here until ``release()``; ``reached`` tells the test it got here."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.opened.set()


@dataclass(frozen=True, slots=True)
class Fail:
    error: ProviderError


Step = Text | Think | Call | Usage | Gate | Fail


class ScriptedProvider:
    def __init__(self, name: str = "scripted", *, default: Sequence[Step] = ()) -> None:
        self.name = name
        self.requests: list[ModelRequest] = []
        self.title_requests: list[ModelRequest] = []
        self._scripts: deque[list[Step]] = deque()
        self._title_scripts: deque[list[Step]] = deque()
        self.default_title = "Scripted Title"
        self.summary_requests: list[ModelRequest] = []
        self._summary_scripts: deque[list[Step]] = deque()
        self.default_summary = "Scripted summary."
        self._default = list(default) or [Text("ok")]
        self.closed = False

    def script(self, *steps: Step) -> None:
        self._scripts.append(list(steps))

    def script_title(self, *steps: Step) -> None:
        """Title requests are played from their own queue so they never eat a reply."""
        self._title_scripts.append(list(steps))

    def script_summary(self, *steps: Step) -> None:
        self._summary_scripts.append(list(steps))

    @property
    def remaining(self) -> int:
        return len(self._scripts)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        if _is_side_request(request, COMPACT_PROMPT):
            self.summary_requests.append(request)
            steps = (
                self._summary_scripts.popleft()
                if self._summary_scripts
                else [Text(self.default_summary)]
            )
        elif _is_side_request(request, TITLE_PROMPT):
            self.title_requests.append(request)
            steps = (
                self._title_scripts.popleft() if self._title_scripts else [Text(self.default_title)]
            )
        else:
            self.requests.append(request)
            steps = self._scripts.popleft() if self._scripts else self._default
        calls: list[ToolCallReady] = []
        for step in steps:
            match step:
                case Text(text=text):
                    yield TextChunk(text=text)
                case Think(text=text):
                    yield ThinkingChunk(text=text)
                case Call():
                    index = len(calls)
                    yield ToolCallStarted(index=index, name=step.name)
                    calls.append(
                        ToolCallReady(
                            index=index,
                            id=step.id or f"call_{len(self.requests)}_{index}",
                            name=step.name,
                            arguments=step.arguments,
                        )
                    )
                case Usage(prompt=prompt, completion=completion):
                    yield UsageReport(prompt_tokens=prompt, completion_tokens=completion)
                case Gate():
                    step.reached.set()
                    await step.opened.wait()
                case Fail(error=error):
                    raise error
        for call in calls:
            yield call

    async def aclose(self) -> None:
        self.closed = True


def _is_side_request(request: ModelRequest, prompt: str) -> bool:
    """Title and compaction requests: one user message opening with the fixed prompt."""
    first = request.messages[0] if len(request.messages) == 1 else None
    return str(getattr(first, "text", "")).startswith(prompt)
