"""The agent loop of one run.

Each iteration drains the steering queue into history, compacts if the last reported
prompt size says so, streams one model call (emitting bracketed text/thinking events),
then either stops on a text-only answer or runs the requested tools concurrently and
goes round again. Cancellation at any point keeps what was streamed, marked
interrupted, and answers every tool call already in history so the transcript stays
valid for the next model call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from runtime.agents import Agent
from runtime.approval import ApprovalBroker
from runtime.compaction import maybe_compact, note_prompt_size
from runtime.conversation import Conversation
from runtime.errors import ProviderError
from runtime.events import (
    ApprovalRequested,
    ApprovalResolved,
    Done,
    ModelRetrying,
    TextDelta,
    TextEnd,
    TextStart,
    ThinkingDelta,
    ThinkingEnd,
    ThinkingStart,
    ToolCallsBegin,
    ToolCallsComplete,
    ToolCallsStart,
    ToolResult,
    UserSteered,
)
from runtime.history import AssistantEntry, ToolCall, ToolResultEntry, UserEntry
from runtime.providers.base import (
    ModelRequest,
    ProviderEvent,
    RetryNotice,
    TextChunk,
    ThinkingChunk,
    ToolCallReady,
    ToolCallStarted,
    UsageReport,
)
from runtime.run import Run
from runtime.storage.base import UsageRecord
from runtime.tools import Tool, ToolOutput, spec_of

log = logging.getLogger(__name__)

CANCELLED_TOOL_RESULT = "Cancelled: the user stopped the run before this tool finished."


@dataclass(kw_only=True, slots=True)
class _CallState:
    """What one model call has streamed so far (salvaged on cancel or failure)."""

    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    calls: list[ToolCallReady] = field(default_factory=list)
    segment: list[str] = field(default_factory=list)
    open_segment: Literal["text", "thinking"] | None = None
    begun: bool = False


class AgentLoop:
    def __init__(
        self,
        run: Run,
        agent: Agent,
        conversation: Conversation,
        *,
        approvals: ApprovalBroker | None = None,
    ) -> None:
        self._run = run
        self._agent = agent
        self._conv = conversation
        self._approvals = approvals or ApprovalBroker()
        self._owner = _trigger_speaker(conversation)
        self._call: _CallState | None = None
        self._tool_calls: tuple[ToolCall, ...] = ()
        self._tool_results: dict[int, ToolResultEntry] = {}
        self._last_text = ""
        self._tools: dict[str, Tool] = {}

    async def execute(self) -> Done:
        try:
            return await self._iterate()
        except asyncio.CancelledError:
            self._salvage()
            return Done(reason="cancelled", text=self._last_text)

    async def _iterate(self) -> Done:
        for _ in range(self._agent.spec.max_iterations):
            self._drain_steering()
            await maybe_compact(self._run, self._agent, self._conv)
            outcome = await self._model_call()
            if outcome is not None:
                return outcome
            if not self._tool_calls:
                return Done(reason="text", text=self._last_text)
            await self._run_tools()
        return Done(reason="max_iterations", text=self._last_text)

    def _drain_steering(self) -> None:
        if not self._conv.has_queued:
            return
        for message in self._conv.steering.drain():
            entry = self._conv.take_in(message, steered=True)
            if self._owner is None and entry.speaker is not None:
                self._owner = entry.speaker.id  # a run started from the queue
            self._run.emit(UserSteered(entry=entry, message_id=message.message_id))

    async def _model_call(self) -> Done | None:
        """Stream one call into history. Returns a ``Done`` when the run must stop here."""
        spec = self._agent.spec
        request = self._request()
        state = self._call = _CallState()
        self._tool_calls = ()
        try:
            async for event in self._agent.provider.stream(request):
                self._on_provider_event(state, event)
        except ProviderError as exc:
            self._close_segment(state)
            partial = "".join(state.text)
            if partial or state.thinking:
                self._conv.append(
                    AssistantEntry(text=partial, thinking="".join(state.thinking), interrupted=True)
                )
            self._call = None
            log.warning("model call failed for agent %s: %s", spec.name, exc)
            hint = exc.hint or None
            return Done(reason="error", error=exc.user_message, error_hint=hint, text=partial)
        self._close_segment(state)
        self._call = None
        text = "".join(state.text)
        calls = tuple(
            ToolCall(id=c.id, name=c.name, arguments=c.arguments or "{}")
            for c in sorted(state.calls, key=lambda c: c.index)
        )
        if not text and not calls:
            return Done(reason="no_action", text=self._last_text)
        self._conv.append(
            AssistantEntry(text=text, thinking="".join(state.thinking), tool_calls=calls)
        )
        if text:
            self._last_text = text
        self._tool_calls = calls
        return None

    def _request(self) -> ModelRequest:
        # One tool snapshot per call: the model is offered exactly what can be invoked,
        # even if an MCP server drops out while the call streams.
        self._tools = self._agent.available_tools()
        spec = self._agent.spec
        return ModelRequest(
            model=spec.model,
            system=spec.system_prompt,
            messages=tuple(self._conv.history),
            tools=[spec_of(tool) for tool in self._tools.values()],
        )

    def _on_provider_event(
        self,
        state: _CallState,
        event: ProviderEvent,
    ) -> None:
        if type(event) is TextChunk and state.open_segment == "text":
            # The hot path, once per streamed chunk of an open text segment: no dispatch.
            if text := event.text:
                state.text.append(text)
                state.segment.append(text)
                self._run.emit(TextDelta(text=text))
            return
        match event:
            case TextChunk(text=text):
                if text:
                    self._open_segment(state, "text")
                    state.text.append(text)
                    state.segment.append(text)
                    self._run.emit(TextDelta(text=text))
            case ThinkingChunk(text=text):
                if text:
                    self._open_segment(state, "thinking")
                    state.thinking.append(text)
                    state.segment.append(text)
                    self._run.emit(ThinkingDelta(text=text))
            case ToolCallStarted(name=name):
                self._close_segment(state)
                if not state.begun:
                    state.begun = True
                    self._run.emit(ToolCallsBegin(names=(name,)))
            case ToolCallReady():
                state.calls.append(event)
            case RetryNotice(attempt=attempt, delay=delay, cause=cause):
                self._run.emit(ModelRetrying(attempt=attempt, delay=delay, cause=cause))
            case UsageReport():
                self._record_usage(event)

    def _record_usage(self, event: UsageReport) -> None:
        usage = UsageRecord(
            model=self._agent.spec.model,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
            at=time.time(),
        )
        self._run.usage.append(usage)
        self._conv.record_usage(usage)
        note_prompt_size(self._run, self._agent, self._conv, event.prompt_tokens)

    def _open_segment(self, state: _CallState, kind: Literal["text", "thinking"]) -> None:
        if state.open_segment == kind:
            return
        self._close_segment(state)
        state.open_segment = kind
        self._run.emit(TextStart() if kind == "text" else ThinkingStart())

    def _close_segment(self, state: _CallState) -> None:
        segment = "".join(state.segment)
        if state.open_segment == "text":
            self._run.emit(TextEnd(text=segment))
        elif state.open_segment == "thinking":
            self._run.emit(ThinkingEnd(text=segment))
        state.open_segment = None
        state.segment.clear()

    async def _run_tools(self) -> None:
        """Run every call concurrently: events in completion order, history in call order.
        Steering never cancels a tool; only cancelling the run does."""
        calls = self._tool_calls
        self._tool_results = {}
        self._run.emit(ToolCallsStart(calls=calls))
        tasks = {
            asyncio.create_task(self._invoke(call), name=f"tool-{call.name}"): i
            for i, call in enumerate(calls)
        }
        # Done callbacks fire in true completion order; asyncio.wait would batch them.
        completed: asyncio.Queue[asyncio.Task[ToolResultEntry]] = asyncio.Queue()
        for task in tasks:
            task.add_done_callback(completed.put_nowait)
        try:
            for _ in range(len(tasks)):
                task = await completed.get()
                index = tasks[task]
                result = task.result()
                self._tool_results[index] = result
                self._run.emit(
                    ToolResult(call=calls[index], content=result.content, is_error=result.is_error)
                )
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for index in range(len(calls)):
            self._conv.append(self._tool_results[index])
        self._tool_calls = ()
        self._tool_results = {}
        self._run.emit(ToolCallsComplete(count=len(calls)))

    async def _invoke(self, call: ToolCall) -> ToolResultEntry:
        tool = self._tools.get(call.name)

        def fail(message: str) -> ToolResultEntry:
            return ToolResultEntry(call_id=call.id, name=call.name, content=message, is_error=True)

        if tool is None:
            return fail(f"Error: there is no tool named {call.name!r}.")
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return fail(f"Error: the arguments are not valid JSON ({exc.msg}).")
        if not isinstance(args, dict):
            return fail("Error: the arguments must be a JSON object.")
        if tool.approve:
            refusal = await self._ask_approval(call)
            if refusal is not None:
                return fail(refusal)
        timeout = tool.timeout or self._agent.spec.tool_timeout
        try:
            async with asyncio.timeout(timeout):
                output = await tool.handler(args)
        except TimeoutError:
            log.info("tool %s timed out after %.1fs", call.name, timeout)
            return fail(
                f"Error: the tool {call.name!r} did not finish within {timeout:g} seconds "
                "and was abandoned."
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("tool %s failed: %s", call.name, type(exc).__name__)
            return fail(f"Error: {exc}")
        if isinstance(output, ToolOutput):
            return ToolResultEntry(
                call_id=call.id, name=call.name, content=output.text, images=output.images
            )
        return ToolResultEntry(call_id=call.id, name=call.name, content=output)

    async def _ask_approval(self, call: ToolCall) -> str | None:
        """Wait for the owner's decision; None when approved, else the tool result that
        tells the model why the tool did not run. ``/stop`` cancels the wait."""
        timeout = self._agent.spec.approval_timeout
        request, verdict = self._approvals.open(
            conversation_id=self._conv.id,
            tool=call.name,
            arguments=call.arguments,
            owner=self._owner,
            timeout=timeout,
        )
        self._run.emit(ApprovalRequested(request=request))
        resolved = ApprovalResolved(request_id=request.id, approved=False, outcome="cancelled")
        try:
            async with asyncio.timeout(timeout):
                decision = await verdict
            resolved = ApprovalResolved(
                request_id=request.id,
                approved=decision.approved,
                outcome="decided",
                by=decision.by,
            )
        except TimeoutError:
            resolved = ApprovalResolved(request_id=request.id, approved=False, outcome="timeout")
        finally:
            self._approvals.close(request.id)
            self._run.emit(resolved)
        if resolved.outcome == "timeout":
            return (
                f"Denied: nobody approved {call.name!r} within {timeout:g} seconds, "
                "so it was not run."
            )
        if not resolved.approved:
            return f"Denied: the user did not allow {call.name!r}, so it was not run."
        return None

    def _salvage(self) -> None:
        """After a cancel: keep partial text (interrupted) and answer open tool calls."""
        state = self._call
        if state is not None:
            self._close_segment(state)
            partial = "".join(state.text)
            if partial or state.thinking:
                self._conv.append(
                    AssistantEntry(text=partial, thinking="".join(state.thinking), interrupted=True)
                )
                self._last_text = partial or self._last_text
            self._call = None
        if self._tool_calls:
            for index, call in enumerate(self._tool_calls):
                result = self._tool_results.get(index) or ToolResultEntry(
                    call_id=call.id, name=call.name, content=CANCELLED_TOOL_RESULT, is_error=True
                )
                self._conv.append(result)
            self._tool_calls = ()


def _trigger_speaker(conv: Conversation) -> str | None:
    """Who started the run: the speaker of the user message it was started with (the
    last entry, unless the run was started from the steering queue)."""
    last = conv.history[-1] if conv.history else None
    if isinstance(last, UserEntry) and not last.steered and last.speaker is not None:
        return last.speaker.id
    return None
