"""Streaming delivery of one run onto one chat.

The renderer consumes the run's events and keeps the reply's text; its render task turns
that text into platform messages: the first visible text is sent at once (a preview
the final text does not reuse, a Telegram draft, after ``preview_delay``), later changes
become edits paced by the chat's budget (coalesced: whatever accumulated while waiting
goes out in one edit), never an edit with unchanged text. ``ReplyMessages`` keeps the
platform messages in step with the text: it splits at the adapter's limit (measured the
platform's way), re-splits what the platform calls too long, and deletes messages a
shrinking reply no longer needs. A typing task shows the busy indicator only when
nothing is visible after ``typing_delay`` (a fast reply costs no typing call), then
refreshes it until ``Done``. At ``Done`` the final text lands: failed edits are retried,
markup the platform rejects is resent as plain text, and when it still cannot land the
user is told so in one short sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import assert_never

from adapters.base import Adapter, ChatTarget, NativeStream, SentMessage
from adapters.errors import DeliveryError, RateLimited
from gateway.budget import OutboundBudget
from gateway.metrics import Metrics
from gateway.reply_messages import ReplyMessages
from runtime.backoff import Backoff, log_retry
from runtime.events import (
    ApprovalRequested,
    ApprovalResolved,
    Compacted,
    Done,
    ModelRetrying,
    RunEvent,
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
from runtime.run import Run

log = logging.getLogger(__name__)

FAILED_REPLY = "Sorry, the reply failed. Please send your message again."
# Where the person chatting runs the gateway, so an error also shows the operator's fix.
OPERATOR_PLATFORMS = frozenset({"webchat"})
# Where typing costs no API call and is the page's "running" state: shown at once.
IMMEDIATE_TYPING = frozenset({"webchat"})
RETRYING_STATUS = {
    "rate_limited": "_The model is busy; retrying\u2026_",
    "server_error": "_The model service is having trouble; retrying\u2026_",
    "unreachable": "_Can't reach the model yet; retrying\u2026_",
    "stream_broken": "_The model's answer broke off; retrying\u2026_",
}
NO_REPLY = "(no reply)"
MAX_ITERATIONS_NOTE = "I stopped after too many steps without a final answer."
STOPPED_NOTE = "(stopped)"
FINAL_ATTEMPTS = 3
FLUSH_BACKOFF = Backoff(base=0.25, cap=2.0)  # a failed edit is retried this way
# A reply whose text has ended before anything is shown is about to finish: a tool call
# or thinking after text arrives in the same step as its TextEnd, so only the run's save
# remains. Waiting up to this long for it sends the reply once, final, instead of a
# preview (a draft or a first send) followed at once by the final message. Under load
# the save takes longer, and the call saved matters most then.
FINISH_GRACE = 0.25
# Under load (the platform's outbound slots all taken) a preview that the final text
# does not reuse (a Telegram draft: the final message is a call of its own) costs a
# call the other chats' final messages need: it is held until the run ends, for at most
# this long after the reply began (the moment typing would show anyway). A quiet
# platform shows it after ``DeliveryOptions.preview_delay``; a first message that the
# reply ends in (a send later edited, a Slack stream) is never held: first visible text
# stays within ms of the model's first token.
PREVIEW_HOLD = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryOptions:
    typing_interval: float = 4.0
    # A reply visible within this long needs no typing indicator: the floor is then a
    # draft (or first send) and the final message, not three calls.
    typing_delay: float = 1.0
    # A preview the final text does not reuse (a Telegram draft) waits this long after
    # the first text: a reply that ends meanwhile is sent once, final, and costs one
    # call instead of two. Short enough that a streaming reply's preview still shows
    # within ~50 ms of the model's first token.
    preview_delay: float = 0.04
    show_tools: bool = True


class ReplyRenderer:
    def __init__(
        self,
        run: Run,
        adapter: Adapter,
        target: ChatTarget,
        budget: OutboundBudget,
        metrics: Metrics,
        *,
        received_at: float | None = None,
        options: DeliveryOptions | None = None,
    ) -> None:
        self._run = run
        self._adapter = adapter
        self._target = target
        self._budget = budget
        self._metrics = metrics
        self._received_at = received_at
        self._options = options or DeliveryOptions()
        self._key = target.budget_key
        self._segments: list[str] = []
        self._status = ""
        self._notes: list[str] = []
        self._dirty = asyncio.Event()
        self._ended = asyncio.Event()  # the run's events are over: the next flush is final
        self._text_ended = False  # the last text segment ended and nothing followed yet
        self._messages = self._new_messages()
        # An approval question splits the reply: what came before stays above it, the
        # rest goes to new messages under it (``_seal``).
        self._earlier: list[SentMessage] = []
        self._sealed = 0  # segments shown above an approval question
        self._seal_pending = False
        self._native: NativeStream | None = adapter.native_stream(target)
        self.first_visible_at: float | None = None
        self._visible = asyncio.Event()
        self._typing_shown = False
        self._began = time.monotonic()

    @property
    def messages(self) -> list[SentMessage]:
        return [*self._earlier, *self._messages.sent]

    def _new_messages(self) -> ReplyMessages:
        return ReplyMessages(
            self._adapter, self._target, self._budget, self._metrics, on_visible=self._mark_visible
        )

    async def render(self) -> None:
        """Deliver the whole run; returns after the final text has landed."""
        # Typing is a timer, not a task, until it is due: most replies show text first.
        typing = _TypingTimer(self._typing_delay(), self._typing_due)
        # Events arrive as the run emits them (no queue, no task hop per event); this
        # task only wakes to flush.
        self._run.listen(self._on_event)
        try:
            await self._flush_loop()
        finally:
            await typing.cancel()
            if self._typing_shown:
                await self._budget.call(self._key, "typing", self._typing_off)

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: RunEvent) -> None:
        self._text_ended = isinstance(event, TextEnd)
        match event:
            case TextStart():
                self._segments.append("")
                self._status = ""
            case TextDelta(text=text):
                self._append_text(text)
            case ToolCallsBegin(names=names) if self._options.show_tools:
                self._set_status(names)
            case ToolCallsStart(calls=calls) if self._options.show_tools:
                self._set_status(tuple(c.name for c in calls))
            case ToolCallsComplete():
                self._status = ""
            case Compacted(status=status, detail=detail) if status != "compacted":
                self._notes.append(f"_{detail}_")
            case ModelRetrying(cause=cause):
                self._show_status(RETRYING_STATUS[cause])  # TextStart replaces it
            case ApprovalRequested() if self._native is None:
                # Native streams (drafts) deliver the final text last anyway.
                self._seal_pending = True
                self._dirty.set()
            case Done():
                self._finish(event)
                self._ended.set()
            case (
                TextEnd()
                | ThinkingStart()
                | ThinkingDelta()
                | ThinkingEnd()
                | ToolCallsBegin()
                | ToolCallsStart()
                | ToolResult()
                | Compacted()
                | UserSteered()
                | ApprovalRequested()  # asked by gateway.approvals; a native stream goes on
                | ApprovalResolved()
            ):
                pass
            case _:
                assert_never(event)

    def _append_text(self, text: str) -> None:
        if not self._segments:
            self._segments.append("")
        self._segments[-1] += text
        self._dirty.set()

    def _set_status(self, names: tuple[str, ...]) -> None:
        self._show_status(f"_using {', '.join(dict.fromkeys(names))}..._")

    def _show_status(self, status: str) -> None:
        # Shown where the reply will appear, until text or the next status replaces it.
        self._status = status
        self._dirty.set()

    def _finish(self, done: Done) -> None:
        self._status = ""
        body = self.body()
        if done.reason == "error":
            log.warning("run %s failed: %s", self._run.id, done.error)
            self._notes.append(done.error or FAILED_REPLY)
            if done.error_hint and self._adapter.name in OPERATOR_PLATFORMS:
                self._notes.append(f"Fix: {done.error_hint}")
        elif done.reason == "cancelled":
            self._notes.append(STOPPED_NOTE)
        elif done.reason == "max_iterations":
            self._notes.append(MAX_ITERATIONS_NOTE)
        elif not body and not self._earlier:
            self._notes.append(NO_REPLY)
        self._dirty.set()

    def body(self) -> str:
        return "\n\n".join(s for s in self._segments[self._sealed :] if s.strip())

    def display_text(self) -> str:
        # Stripped: platforms trim whitespace, so "Hello " then "Hello" would be an edit
        # the platform calls "not modified".
        parts = [self.body().strip(), self._status, *self._notes]
        return "\n\n".join(p for p in parts if p)

    # -- flushing ------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        failures = final_failures = 0
        while True:
            await self._dirty.wait()
            if self._text_ended and not self._first_shown():
                await _wait(self._ended, FINISH_GRACE)
            elif not self._ended.is_set() and self._preview_only():
                await _wait(self._ended, self._preview_wait())
            if not self._ended.is_set() and self._first_shown():
                # Pace first, build the text after: the edit carries everything that
                # arrived meanwhile instead of a stale copy followed by a catch-up edit.
                # The run's end cuts the wait short: the final text is not an edit to pace.
                wait = self._budget.edit_wait(self._key)
                if wait > 0:
                    await _wait(self._ended, wait)
            self._dirty.clear()
            final = self._ended.is_set()
            if self._seal_pending:
                self._seal_pending = False
                await self._seal()
            try:
                await self._flush(final=final)
            except DeliveryError as exc:
                failures += 1
                if final:
                    final_failures += 1
                    if final_failures >= FINAL_ATTEMPTS:
                        log.error("gave up delivering the final text to %s: %s", self._key, exc)
                        await self._messages.give_up()
                        return
                delay = FLUSH_BACKOFF.delay(failures)
                log_retry(log, f"delivery to {self._key}", str(exc), attempt=failures, delay=delay)
                await asyncio.sleep(delay)
                self._dirty.set()  # the text is not shown yet: try again
                continue
            if final and not self._dirty.is_set():
                return

    async def _seal(self) -> None:
        """Settle the reply so far (without the tool status) in the messages it has,
        and start new ones, so text after an approval question lands below it."""
        text = "\n\n".join(p for p in [self.body().strip(), *self._notes] if p)
        try:
            await self._messages.show(text, final=True)
        except DeliveryError as exc:  # best effort: the reply goes on where it was
            log.info("could not settle the reply above an approval question: %s", exc)
            return
        self._earlier.extend(self._messages.sent)
        self._messages = self._new_messages()
        self._sealed = len(self._segments)
        self._status = ""
        self._notes.clear()

    async def _flush(self, *, final: bool) -> None:
        text = self.display_text()
        if not text:
            return
        if self._native is not None:
            await self._flush_native(text, final=final)
            return
        await self._messages.show(text, final=final)

    async def _flush_native(self, text: str, *, final: bool) -> None:
        assert self._native is not None
        native = self._native
        if final:
            delivered = await self._budget.call(self._key, "send", lambda: native.finish(text))
            if delivered:
                self._mark_visible()
                return
        else:
            shown = await self._budget.call(self._key, "edit", lambda: native.update(text))
            if shown:
                self._mark_visible()
                return
            if shown is None:
                return  # gave up for now; the next flush tries again
        # The platform could not stream here, or leaves the final message to us: the
        # messages it streamed are edited (or deleted) from here on.
        self._native = None
        self._messages.adopt(native.handover())
        await self._flush(final=final)

    def _preview_wait(self) -> float:
        if self._budget.crowded:
            return self._began + PREVIEW_HOLD - time.monotonic()
        return self._options.preview_delay

    def _preview_only(self) -> bool:
        """Nothing shown yet, and what would show first is a preview only."""
        native = self._native
        return native is not None and native.preview_only and not self._first_shown()

    def _first_shown(self) -> bool:
        return bool(self._messages.sent) or self.first_visible_at is not None

    def _mark_visible(self) -> None:
        if self.first_visible_at is None:
            self.first_visible_at = time.monotonic()
            self._visible.set()
            if self._received_at is not None:
                self._metrics.first_visible.observe(
                    self.first_visible_at - self._received_at, self._adapter.name
                )

    # -- typing --------------------------------------------------------------------------

    def _typing_delay(self) -> float:
        return 0.0 if self._adapter.name in IMMEDIATE_TYPING else self._options.typing_delay

    def _typing_due(self) -> asyncio.Task[None] | None:
        if self._visible.is_set():
            return None  # text is on screen: the indicator would say nothing new
        return asyncio.create_task(self._typing_loop(), name="typing")

    async def _typing_loop(self) -> None:
        while True:
            await self._budget.call(self._key, "typing", self._typing_on)
            await asyncio.sleep(self._options.typing_interval)

    async def _typing_on(self) -> None:
        self._typing_shown = True
        try:
            await self._adapter.typing(self._target, True)
        except DeliveryError as exc:
            if isinstance(exc, RateLimited):
                raise
            log.debug("typing indicator failed in %s: %s", self._key, exc)

    async def _typing_off(self) -> None:
        try:
            await self._adapter.typing(self._target, False)
        except DeliveryError as exc:
            log.debug("clearing the typing indicator failed in %s: %s", self._key, exc)


class _TypingTimer:
    """Calls ``due`` after ``delay`` seconds (at once for 0); ``cancel`` stops the timer
    or the task ``due`` started."""

    def __init__(self, delay: float, due: Callable[[], asyncio.Task[None] | None]) -> None:
        self._due = due
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        if delay <= 0:
            self._fire()
        else:
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._task = self._due()

    async def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Whether ``event`` was set within ``timeout`` seconds. A deadline on the current
    task, not ``wait_for``'s extra task: every reply waits this way two or three times."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    return False
