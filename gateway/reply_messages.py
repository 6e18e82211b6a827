"""The platform messages one reply occupies, kept in step with the reply's text.

``show`` splits the reply (markdown) into chunks that fit the adapter's ``TextFormat``
once rendered and measured the platform's way (Telegram counts UTF-16 code units), then
sends the chunks that are new and edits the ones that changed. A chunk the platform
still finds too long is not retried as it was: the limit shrinks and the reply is split
again. When the reply shrinks, the messages it no longer needs are deleted (or, where
deleting is refused, edited down to a marker), never left stale. When even the final
text cannot land, ``give_up`` tells the user so in one short sentence.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable

from adapters.base import Adapter, ChatTarget, SentMessage
from adapters.errors import DeliveryError, MarkupRejected, MessageNotModified, MessageTooLong
from adapters.text.chunking import close_open_fence, split_message
from gateway.budget import OutboundBudget
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

UNDELIVERED = "Sorry, I couldn't deliver my reply here."
RETIRED = "…"  # what a no-longer-needed message shows where it cannot be deleted
GAVE_UP = "still rate limited after repeated attempts"
SHRINK = 0.75  # after a "message is too long" refusal: the limit, relative to that chunk
MIN_LIMIT = 64  # below this a platform refusing length is not about length


class ReplyMessages:
    def __init__(
        self,
        adapter: Adapter,
        target: ChatTarget,
        budget: OutboundBudget,
        metrics: Metrics,
        *,
        on_visible: Callable[[], None],
    ) -> None:
        self._adapter = adapter
        self._format = adapter.text_format
        self._target = target
        self._key = target.budget_key
        self._budget = budget
        self._metrics = metrics
        self._on_visible = on_visible
        self.sent: list[SentMessage] = []
        self._shown: list[str] = []  # what each sent message shows now (rendered)
        self._markup = True
        self.limit = self._format.limit
        # Rendering is pure and each chunk is rendered to measure it, then again to send
        # or compare it: one show renders a chunk once. Cleared per show, so it holds
        # one reply's chunks at most.
        self._rendered: dict[tuple[str, bool], str] = {}

    def adopt(self, messages: list[tuple[SentMessage, str]]) -> None:
        """Take over messages a native stream left, to edit them from now on."""
        for message, shown in messages:
            self.sent.append(message)
            self._shown.append(shown)

    async def show(self, text: str, *, final: bool) -> None:
        self._rendered.clear()
        while True:
            chunks = self.split(text)
            if not final and chunks:
                chunks[-1] = close_open_fence(chunks[-1])
            chunk = ""
            try:
                for index, chunk in enumerate(chunks):
                    await self._show(index, chunk)
                break
            except MessageTooLong as exc:
                self._shrink(exc, self._measure(chunk))
        await self._retire(len(chunks))

    def split(self, text: str) -> list[str]:
        return split_message(text, self.limit, self._measure)

    def _measure(self, md: str) -> int:
        return self._format.measure(self._render(md), markup=self._markup)

    def _shrink(self, exc: MessageTooLong, refused: int) -> None:
        # Below the refused chunk's size, so that text is never sent as it was again.
        smaller = int(min(self.limit, refused) * SHRINK)
        if smaller < MIN_LIMIT:
            raise DeliveryError(f"refused as too long even at {self.limit}: {exc}") from exc
        log.warning(
            "%s refused a message as too long (%s); splitting again at %d instead of %d",
            self._adapter.name,
            exc,
            smaller,
            self.limit,
        )
        self.limit = smaller

    async def _show(self, index: int, chunk: str) -> None:
        if index >= len(self.sent):
            sent = await self._budget.call(self._key, "send", lambda: self._send(chunk))
            if sent is None:
                raise DeliveryError(GAVE_UP)
            message, shown = sent
            self.sent.append(message)
            self._shown.append(shown)
            self._metrics.sends.inc(self._adapter.name)
            self._on_visible()
            return
        if self._shown[index] == self._render(chunk):
            return  # never an edit with unchanged text
        await self._edit_to(index, chunk)

    async def _edit_to(self, index: int, chunk: str, *, markup: bool | None = None) -> None:
        message = self.sent[index]
        edited = await self._budget.call(
            self._key, "edit", lambda: self._edit(message, chunk, markup=markup)
        )
        if edited is None:
            raise DeliveryError(GAVE_UP)  # not shown: the flush loop tries again
        self._shown[index] = edited
        self._metrics.edits.inc(self._adapter.name)

    def _render(self, chunk: str, *, markup: bool | None = None) -> str:
        use_markup = self._markup if markup is None else markup
        key = (chunk, use_markup)
        shown = self._rendered.get(key)
        if shown is None:
            shown = self._rendered[key] = self._format.render(chunk, markup=use_markup)
        return shown

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

    async def _edit(self, message: SentMessage, chunk: str, *, markup: bool | None) -> str:
        """Edit a message to a chunk; returns the text it now shows."""
        use_markup = self._markup if markup is None else markup
        text = self._render(chunk, markup=use_markup)
        try:
            await self._adapter.edit(message, text, markup=use_markup)
        except MessageNotModified:
            return text  # the platform already shows this text; never retried
        except MarkupRejected:
            log.info("%s rejected the markup; editing as plain text", self._adapter.name)
            self._markup = False
            text = self._render(chunk)
            with contextlib.suppress(MessageNotModified):
                await self._adapter.edit(message, text, markup=False)
        return text

    async def _retire(self, needed: int) -> None:
        """Remove the messages past ``needed`` (the reply shrank), newest first."""
        while len(self.sent) > needed:
            message = self.sent[-1]
            try:
                delete = functools.partial(self._delete, message)
                done = await self._budget.call(self._key, "send", delete)
            except DeliveryError as exc:
                log.info("%s could not delete a spilled message (%s)", self._adapter.name, exc)
                if self._shown[-1] != RETIRED:
                    await self._edit_to(len(self.sent) - 1, RETIRED, markup=False)
                done = True
            if done is None:
                raise DeliveryError(GAVE_UP)
            self.sent.pop()
            self._shown.pop()

    async def _delete(self, message: SentMessage) -> bool:
        await self._adapter.delete(message)
        return True

    async def give_up(self) -> None:
        """The final text could not land: say so in one short sentence, plainly."""
        try:
            await self._budget.call(
                self._key,
                "send",
                lambda: self._adapter.send(self._target, UNDELIVERED, markup=False),
            )
        except DeliveryError as exc:
            log.error("could not even tell %s that the reply failed: %s", self._key, exc)
