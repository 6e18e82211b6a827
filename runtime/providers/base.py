"""The model-provider seam.

A provider turns a ``ModelRequest`` into an async stream of ``ProviderEvent``s. It
assembles tool-call fragments itself (formats differ) and reports each finished call
with ``ToolCallReady`` after the text; the agent loop never sees wire formats.

Retries (connect errors, 429, 5xx) happen only before the first content event is
yielded, each announced by a ``RetryNotice`` before its backoff; after that a failure
raises ``ProviderStreamError`` and the loop keeps what was streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from runtime.history import Entry
from runtime.tools import ToolSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelRequest:
    model: str
    system: str
    messages: Sequence[Entry]
    tools: Sequence[ToolSpec] = ()
    max_tokens: int = 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class TextChunk:
    kind: Literal["text"] = "text"
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ThinkingChunk:
    kind: Literal["thinking"] = "thinking"
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallStarted:
    """The model began a tool call (its name is known, arguments still streaming)."""

    kind: Literal["tool_call_started"] = "tool_call_started"
    index: int
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallReady:
    kind: Literal["tool_call_ready"] = "tool_call_ready"
    index: int
    id: str
    name: str
    arguments: str  # raw JSON text; "{}" when the model sent none


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageReport:
    kind: Literal["usage"] = "usage"
    prompt_tokens: int
    completion_tokens: int


RetryCause = Literal["unreachable", "rate_limited", "server_error", "stream_broken"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryNotice:
    """The call failed before its first token and is retried after ``delay`` seconds
    (``attempt`` is the attempt that failed, 1-based). Not content: a UI shows a status."""

    kind: Literal["retry"] = "retry"
    attempt: int
    delay: float
    cause: RetryCause


ProviderEvent = (
    TextChunk | ThinkingChunk | ToolCallStarted | ToolCallReady | UsageReport | RetryNotice
)


class ModelProvider(Protocol):
    """``name`` is the provider's config name, used in error messages."""

    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]: ...

    async def aclose(self) -> None: ...
