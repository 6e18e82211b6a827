"""Events a run emits, in order, ending with exactly one ``Done``.

Text and reasoning are bracketed: ``TextStart``, ``TextDelta``..., ``TextEnd`` (likewise
``Thinking*``), one segment open at a time. Tool use within one model call:
``ToolCallsBegin`` as soon as the model starts naming a tool (so a UI can show progress
before the arguments have streamed), ``ToolCallsStart`` with the complete batch when
execution begins, one ``ToolResult`` per call in completion order, then
``ToolCallsComplete``. ``TitleChanged`` is emitted outside runs, to runtime listeners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runtime.approval import ApprovalRequest
from runtime.history import ToolCall, UserEntry

StopReason = Literal["text", "no_action", "max_iterations", "cancelled", "error"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TextStart:
    kind: Literal["text_start"] = "text_start"


@dataclass(frozen=True, kw_only=True, slots=True)
class TextDelta:
    kind: Literal["text_delta"] = "text_delta"
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TextEnd:
    kind: Literal["text_end"] = "text_end"
    text: str  # the whole segment


@dataclass(frozen=True, kw_only=True, slots=True)
class ThinkingStart:
    kind: Literal["thinking_start"] = "thinking_start"


@dataclass(frozen=True, kw_only=True, slots=True)
class ThinkingDelta:
    kind: Literal["thinking_delta"] = "thinking_delta"
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ThinkingEnd:
    kind: Literal["thinking_end"] = "thinking_end"
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallsBegin:
    kind: Literal["tool_calls_begin"] = "tool_calls_begin"
    names: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallsStart:
    kind: Literal["tool_calls_start"] = "tool_calls_start"
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolResult:
    kind: Literal["tool_result"] = "tool_result"
    call: ToolCall
    content: str
    is_error: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallsComplete:
    kind: Literal["tool_calls_complete"] = "tool_calls_complete"
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class UserSteered:
    """A queued message was appended to the running turn (one event per message)."""

    kind: Literal["user_steered"] = "user_steered"
    entry: UserEntry
    message_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Compacted:
    """``compacted``: older turns replaced by a summary. ``failed`` / ``ineffective``:
    the run goes on uncompacted; said once per conversation."""

    kind: Literal["compacted"] = "compacted"
    status: Literal["compacted", "failed", "ineffective"]
    summarised_entries: int = 0
    retained_entries: int = 0
    detail: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class TitleChanged:
    kind: Literal["title_changed"] = "title_changed"
    conversation_id: str
    title: str
    source: Literal["generated", "user"] = "generated"
    origin: object | None = None  # the origin of the run whose exchange was titled


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelRetrying:
    """The model call failed before its first token and is retried in ``delay`` seconds
    (``attempt`` is the attempt that failed). A UI shows a short status until content
    arrives."""

    kind: Literal["model_retrying"] = "model_retrying"
    attempt: int
    delay: float
    cause: Literal["unreachable", "rate_limited", "server_error", "stream_broken"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequested:
    """A tool marked ``approve`` waits for the conversation owner's decision."""

    kind: Literal["approval_requested"] = "approval_requested"
    request: ApprovalRequest


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalResolved:
    """The wait ended: ``decided`` by ``by``, ``timeout`` (a denial) or ``cancelled``."""

    kind: Literal["approval_resolved"] = "approval_resolved"
    request_id: str
    approved: bool
    outcome: Literal["decided", "timeout", "cancelled"]
    by: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Done:
    kind: Literal["done"] = "done"
    reason: StopReason
    error: str | None = None  # set when reason == "error": one short sentence for the user
    # The operator's fix for ``error``, naming the setting in use; shown only where the
    # user is the operator (the web chat).
    error_hint: str | None = None
    text: str = ""  # the final assistant text of the run, if any

    @property
    def stop_reason(self) -> str:
        """The contract's spelling: ``text``, ..., ``error: <message>``."""
        if self.reason == "error":
            return f"error: {self.error or 'unknown error'}"
        return self.reason


RunEvent = (
    TextStart
    | TextDelta
    | TextEnd
    | ThinkingStart
    | ThinkingDelta
    | ThinkingEnd
    | ToolCallsBegin
    | ToolCallsStart
    | ToolResult
    | ToolCallsComplete
    | UserSteered
    | Compacted
    | ModelRetrying
    | ApprovalRequested
    | ApprovalResolved
    | Done
)
