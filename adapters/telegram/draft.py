"""Private-chat replies previewed as a Telegram draft (sendMessageDraft) while they stream.

``Drafts`` belongs to one bot: it numbers the drafts and remembers whether the server
has the method at all (a server without it answers 404 once, and from then on replies
stream by send and edit). ``DraftStream`` is the adapter's ``NativeStream`` for one reply.
"""

from __future__ import annotations

import itertools
import logging

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import InvalidToken

from adapters.base import SentMessage
from adapters.errors import DeliveryError
from adapters.telegram.errors import delivery_errors
from adapters.text.chunking import close_open_fence, split_message
from adapters.text.format import TextFormat

log = logging.getLogger(__name__)


class Drafts:
    """sendMessageDraft for one bot."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot
        self.supported = True
        self._ids = itertools.count(1)

    def stream(self, chat_id: int, thread_id: int | None, fmt: TextFormat) -> DraftStream:
        return DraftStream(self, chat_id, thread_id, next(self._ids), fmt)

    async def show(self, chat_id: int, thread_id: int | None, draft_id: int, html: str) -> bool:
        """Show ``html`` as the chat's draft; False when the server has no drafts."""
        try:
            with delivery_errors():
                await self._bot.send_message_draft(
                    chat_id,
                    draft_id,
                    html,
                    message_thread_id=thread_id,
                    parse_mode=ParseMode.HTML,
                )
        except DeliveryError as exc:
            # A server without sendMessageDraft answers 404, which PTB reports as a token
            # problem; the token already passed getMe, so it means "no drafts here".
            if isinstance(exc.__cause__, InvalidToken):
                log.info("telegram server has no sendMessageDraft; streaming by edits")
                self.supported = False
                return False
            raise
        return True


class DraftStream:
    """One private-chat reply previewed as a draft while it streams.

    ``update`` shows the reply so far as formatted HTML (its last message-sized chunk
    when longer); ``finish`` leaves the final message to the gateway's renderer, which
    splits and sends it with the adapter's ``text_format`` (a draft is only a preview:
    the real message replaces it). Without drafts on the server (404) ``update``
    answers False and the renderer sends and edits instead.
    """

    preview_only = True

    def __init__(
        self, drafts: Drafts, chat_id: int, thread_id: int | None, draft_id: int, fmt: TextFormat
    ) -> None:
        self._drafts = drafts
        self._chat_id = chat_id
        self._thread_id = thread_id
        self._draft_id = draft_id
        self._fmt = fmt

    async def update(self, text: str) -> bool:
        if not self._drafts.supported:
            return False
        fmt = self._fmt
        chunks = split_message(text, fmt.limit, lambda md: fmt.measure(fmt.render(md)))
        preview = fmt.render(close_open_fence(chunks[-1])) if chunks else ""
        if not preview.strip():
            return True  # nothing to show yet (a draft cannot be empty)
        return await self._drafts.show(self._chat_id, self._thread_id, self._draft_id, preview)

    async def finish(self, text: str) -> bool:
        return False

    def handover(self) -> list[tuple[SentMessage, str]]:
        return []  # a draft is not a message
