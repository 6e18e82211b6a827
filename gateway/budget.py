"""One outbound budget per chat: sends, edits, typing, reactions and renames share it.

Edits are paced to one per ``edit_interval`` per chat, measured from when the previous
edit really started; edits of a chat take turns, so two replies streaming into one chat
still share the pace. A 429 blocks the
whole chat for its ``retry_after``. What must land (sends, edits) waits and retries,
at least ``retry_after`` and growing with the shared backoff when 429s repeat (a
platform answering ``retry_after=0`` is not hammered);
what is decoration (typing, reactions) is skipped while blocked; a rename refused for
longer than ``rename_max_wait`` is skipped and logged, never waited on for minutes.

Across chats, one platform has at most ``concurrency`` calls in flight, sized below the
adapter's HTTP connection pool: a burst of replies waits here for a slot (FIFO, no
timeout) instead of inside the HTTP pool, whose waiting queue is scanned on every
assignment and whose pool timeout would fail a delivery that only had to wait. A slot
is held for one attempt, never across a 429's wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from adapters.errors import RateLimited
from adapters.telegram.adapter import POOL_SIZE as TELEGRAM_POOL_SIZE
from gateway.metrics import Metrics
from runtime.backoff import Backoff, log_retry

log = logging.getLogger(__name__)

T = TypeVar("T")
Kind = Literal["send", "edit", "typing", "react", "rename"]
MAX_ATTEMPTS = 5
RETRY_BACKOFF = Backoff(base=0.05, cap=5.0)
# Calls in flight per platform. Telegram's pool is small on purpose (the Bot API takes
# ~30 messages a second); half of it stays free for calls outside the budget (command
# replies, callback answers), and httpcore checks every pooled connection on each
# request, so fewer connections in use cost less CPU (a 600-message burst measured
# about 2.3 ms of CPU a message at 4 or 8, 2.8 at 12). Slack's and Discord's aiohttp
# pools hold 100.
CONCURRENCY = {"telegram": TELEGRAM_POOL_SIZE // 2}
DEFAULT_CONCURRENCY = 32


@dataclass(kw_only=True, slots=True)
class _Chat:
    last_edit: float = float("-inf")
    blocked_until: float = 0.0
    last_used: float = 0.0
    edit_turn: asyncio.Lock = field(default_factory=asyncio.Lock)


class OutboundBudget:
    def __init__(
        self,
        metrics: Metrics,
        *,
        platform: str,
        edit_interval: float = 1.0,
        rename_max_wait: float = 10.0,
        concurrency: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._platform = platform
        self.edit_interval = edit_interval
        self._rename_max_wait = rename_max_wait
        self._clock = clock
        self._chats: dict[str, _Chat] = {}
        self.concurrency = concurrency or CONCURRENCY.get(platform, DEFAULT_CONCURRENCY)
        self._slots = _Slots(self.concurrency)

    @property
    def crowded(self) -> bool:
        """Every slot of the platform is in use: calls are queueing for one."""
        return self._slots.locked

    def _chat(self, key: str) -> _Chat:
        chat = self._chats.get(key)
        if chat is None:
            if len(self._chats) > 10_000:
                self.forget_idle()
            chat = self._chats[key] = _Chat()
        chat.last_used = self._clock()
        return chat

    def forget_idle(self) -> None:
        horizon = self._clock() - 600
        for key in [k for k, c in self._chats.items() if c.last_used < horizon]:
            del self._chats[key]

    def blocked_for(self, key: str) -> float:
        return max(0.0, self._chat(key).blocked_until - self._clock())

    async def call(self, key: str, kind: Kind, op: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``op`` within the chat's budget. Returns None when it was skipped."""
        chat = self._chat(key)
        if kind != "edit":
            return await self._attempts(chat, key, kind, op)
        async with chat.edit_turn:
            return await self._attempts(chat, key, kind, op)

    async def _attempts(
        self, chat: _Chat, key: str, kind: Kind, op: Callable[[], Awaitable[T]]
    ) -> T | None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            wait = self._wait_for(chat, kind)
            if wait is None:
                return None
            if wait > 0:
                await self._sleep_until(self._clock() + wait)
            if kind == "edit":
                chat.last_edit = self._clock()
            try:
                async with self._slots.hold(urgent=kind == "send"):
                    return await op()
            except RateLimited as exc:
                self._metrics.rate_limited.inc(self._platform)
                delay = RETRY_BACKOFF.delay(attempt, at_least=exc.retry_after)
                chat.blocked_until = max(chat.blocked_until, self._clock() + delay)
                if kind in ("typing", "react"):
                    log.info("%s %s in %s skipped: rate limited", self._platform, kind, key)
                    return None
                what = f"{self._platform} {kind} in {key}"
                log_retry(log, what, "rate limited", attempt=attempt, delay=delay)
        log.error("%s %s in %s gave up after %d attempts", self._platform, kind, key, MAX_ATTEMPTS)
        return None

    def edit_wait(self, key: str) -> float:
        """Seconds until the chat could make its next edit (0 when it could now)."""
        return self._wait_for(self._chat(key), "edit") or 0.0

    async def _sleep_until(self, deadline: float) -> None:
        # asyncio may wake a timer up to one clock tick early; a paced edit must not.
        while (remaining := deadline - self._clock()) > 0:  # noqa: ASYNC110 (a deadline, not an event)
            await asyncio.sleep(remaining)

    def _wait_for(self, chat: _Chat, kind: Kind) -> float | None:
        """Seconds to wait before the operation may go, or None to skip it."""
        now = self._clock()
        blocked = max(0.0, chat.blocked_until - now)
        if kind in ("typing", "react") and blocked > 0:
            return None
        if kind == "rename" and blocked > self._rename_max_wait:
            log.info("%s rename skipped: chat rate limited for %.0fs", self._platform, blocked)
            return None
        if kind != "edit":
            return blocked
        return max(blocked, chat.last_edit + self.edit_interval - now, 0.0)


class _Slots:
    """At most ``size`` calls in flight. Waiting sends (a reply's first message, a final
    text) go before waiting edits, typing and the rest, FIFO within each: when every
    chat's reply streams at once, a reply's first visible text does not queue behind
    the others' progress edits."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    @property
    def locked(self) -> bool:
        return self._free == 0

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
        else:
            queue = self._waiting[0 if urgent else 1]
            turn = asyncio.get_running_loop().create_future()
            queue.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if not turn.cancelled():
                    self._release()  # handed a slot just as it was cancelled
                elif turn in queue:  # else a release already passed over it
                    queue.remove(turn)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # the slot passes straight to the next call
                    return
        self._free += 1
