"""Per-chat FIFO lanes: the gateway's one inbox between the adapters and the pipeline.

``put`` is synchronous: a message takes its place in its chat's lane the moment the
adapter hands it over, before any await, so arrival order is the processing order
whatever the adapter awaits afterwards. Each lane has one worker task that handles its
items one at a time; chats never wait on each other, and an adapter's intake (a poll
loop, a socket reader) never waits on a handler. A lane and its worker exist only while
the lane has work: an idle chat costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Lanes(Generic[T]):
    def __init__(self, work: Callable[[T], Awaitable[None]], *, name: str = "lane") -> None:
        self._work = work
        self._name = name
        self._queues: dict[str, deque[T]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, key: str, item: T) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(item)
            return
        self._queues[key] = deque([item])
        self._idle.clear()
        self._workers[key] = asyncio.create_task(self._drain(key), name=f"{self._name}-{key}")

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                item = queue[0]
                try:
                    await self._work(item)
                except Exception:
                    log.exception("handling a message in %s failed", key)
                finally:
                    queue.popleft()
        finally:
            # Whatever was still queued when a cancel arrived is dropped with the lane:
            # it stays unanswered in the durable inbox and is answered after a restart.
            del self._queues[key]
            del self._workers[key]
            if not self._workers:
                self._idle.set()

    def active(self, key: str) -> bool:
        return key in self._queues

    def __len__(self) -> int:
        """Lanes with work now."""
        return len(self._queues)

    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until every lane is empty; False when ``timeout`` passed first."""
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def cancel(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # A worker cancelled before its first step never ran its own cleanup.
        self._queues.clear()
        self._workers.clear()
        self._idle.set()
