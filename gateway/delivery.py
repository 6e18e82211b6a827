"""Streaming delivery of one run onto one chat.

The renderer consumes the run's events and keeps the reply's text; a flusher task turns
that text into platform messages: the first visible text is sent at once, later changes
become edits paced by the chat's budget (coalesced: whatever accumulated while waiting
goes out in one edit), never an edit with unchanged text. Text over the platform limit
spills into further messages, split by ``split_message``. A typing task refreshes the
busy indicator until ``Done``. At ``Done`` the final text always lands: failed edits are
retried, markup the platform rejects is resent as plain text.
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
from adapters.errors import DeliveryError, MarkupRejected, MessageNotModified, RateLimited
from gateway.budget import OutboundBudget
from gateway.chunking import close_open_fence, split_message
from gateway.markup import to_discord, to_plain_text, to_slack_mrkdwn, to_telegram_html
from gateway.metrics import Metrics
from runtime.events import (
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
GAVE_UP = "still rate limited after repeated attempts"

_CONVERTERS: dict[str, Callable[[str], str]] = {
    "telegram_html": to_telegram_html,
    "slack_mrkdwn": to_slack_mrkdwn,
    "discord": to_discord,
    "plain": lambda text: text,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryOptions:
    typing_interval: float = 4.0
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
        self._done = False
        self._sent: list[SentMessage] = []
        self._shown: list[str] = []  # what each sent message shows now (rendered)
        self._markup = adapter.markup != "plain"
        self._native: NativeStream | None = adapter.native_stream(target)
        self.first_visible_at: float | None = None
        self._typing_shown = False

    @property
    def messages(self) -> list[SentMessage]:
        return list(self._sent)

    async def render(self) -> None:
        """Deliver the whole run; returns after the final text has landed."""
        typing = asyncio.create_task(self._typing_loop(), name="typing")
        flusher = asyncio.create_task(self._flush_loop(), name="flusher")
        try:
            async for event in self._run.events():
                self._on_event(event)
        finally:
            self._done = True
            self._dirty.set()
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await typing
            await flusher
            if self._typing_shown:
                await self._budget.call(self._key, "typing", self._typing_off)

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: RunEvent) -> None:
        match event:
            case TextStart():
                self._segments.append("")
                self._status = ""
            case TextDelta(text=text):
                if not self._segments:
                    self._segments.append("")
                self._segments[-1] += text
                self._dirty.set()
            case ToolCallsBegin(names=names) if self._options.show_tools:
                self._set_status(names)
            case ToolCallsStart(calls=calls) if self._options.show_tools:
                self._set_status(tuple(c.name for c in calls))
            case ToolCallsComplete():
                self._status = ""
            case Compacted(status=status, detail=detail) if status != "compacted":
                self._notes.append(f"_{detail}_")
            case ModelRetrying(cause=cause):
                # Shown where the reply will appear; TextStart replaces it.
                self._status = RETRYING_STATUS[cause]
                self._dirty.set()
            case Done():
                self._finish(event)
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
            ):
                pass
            case _:
                assert_never(event)

    def _set_status(self, names: tuple[str, ...]) -> None:
        self._status = f"_using {', '.join(dict.fromkeys(names))}..._"
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
        elif not body:
            self._notes.append(NO_REPLY)
        self._dirty.set()

    def body(self) -> str:
        return "\n\n".join(s for s in self._segments if s.strip())

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
            if not self._done and self._first_shown():
                # Pace first, build the text after: the edit carries everything that
                # arrived meanwhile instead of a stale copy followed by a catch-up edit.
                await self._budget.edit_ready(self._key)
            self._dirty.clear()
            final = self._done
            try:
                await self._flush(final=final)
            except DeliveryError as exc:
                failures += 1
                log.warning("delivery to %s failed (attempt %d): %s", self._key, failures, exc)
                if final:
                    final_failures += 1
                    if final_failures >= FINAL_ATTEMPTS:
                        log.error("gave up delivering the final text to %s", self._key)
                        return
                await asyncio.sleep(min(2.0, 0.25 * failures))
                self._dirty.set()  # the text is not shown yet: try again
                continue
            if final and not self._dirty.is_set():
                return

    async def _flush(self, *, final: bool) -> None:
        text = self.display_text()
        if not text:
            return
        if self._native is not None:
            await self._flush_native(text, final=final)
            return
        chunks = split_message(text, self._adapter.limit)
        if not final and chunks:
            chunks[-1] = close_open_fence(chunks[-1])
        for index, chunk in enumerate(chunks):
            await self._show(index, chunk)

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
        # The platform could not stream here, or leaves the final message to us.
        self._native = None
        await self._flush(final=final)

    async def _show(self, index: int, chunk: str) -> None:
        if index >= len(self._sent):
            sent = await self._budget.call(self._key, "send", lambda: self._send(chunk))
            if sent is None:
                raise DeliveryError(GAVE_UP)
            message, shown = sent
            self._sent.append(message)
            self._shown.append(shown)
            self._metrics.sends.inc(self._adapter.name)
            self._mark_visible()
            return
        if self._shown[index] == self._render(chunk):
            return  # never an edit with unchanged text
        message = self._sent[index]
        edited = await self._budget.call(self._key, "edit", lambda: self._edit(message, chunk))
        if edited is None:
            raise DeliveryError(GAVE_UP)  # not shown: the flush loop tries again
        self._shown[index] = edited
        self._metrics.edits.inc(self._adapter.name)

    def _render(self, chunk: str) -> str:
        if not self._markup:
            return to_plain_text(chunk) if self._adapter.markup != "plain" else chunk
        return _CONVERTERS[self._adapter.markup](chunk)

    async def _send(self, chunk: str) -> tuple[SentMessage, str]:
        """Send a chunk; returns the message and the text it shows."""
        text = self._render(chunk)
        try:
            return await self._adapter.send(self._target, text, markup=self._markup), text
        except MarkupRejected:
            log.info("%s rejected the markup; sending plain text", self._adapter.name)
            self._markup = False
            text = self._render(chunk)
            return await self._adapter.send(self._target, text, markup=False), text

    async def _edit(self, message: SentMessage, chunk: str) -> str:
        """Edit a message to a chunk; returns the text it now shows."""
        text = self._render(chunk)
        try:
            await self._adapter.edit(message, text, markup=self._markup)
        except MessageNotModified:
            return text  # the platform already shows this text; never retried
        except MarkupRejected:
            log.info("%s rejected the markup; editing as plain text", self._adapter.name)
            self._markup = False
            text = self._render(chunk)
            with contextlib.suppress(MessageNotModified):
                await self._adapter.edit(message, text, markup=False)
        return text

    def _first_shown(self) -> bool:
        return bool(self._sent) or self.first_visible_at is not None

    def _mark_visible(self) -> None:
        if self.first_visible_at is None:
            self.first_visible_at = time.monotonic()
            if self._received_at is not None:
                self._metrics.first_visible.observe(
                    self.first_visible_at - self._received_at, self._adapter.name
                )

    # -- typing --------------------------------------------------------------------------

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
