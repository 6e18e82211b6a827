"""A run: one owned task that streams events to any number of subscribers.

The runtime creates the task; the run owns its lifetime, not the platform handler that
caused it. Events are kept for the run's life so a subscriber that attaches late still
sees everything from ``TextStart`` on; every stream ends with the run's single ``Done``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal

from runtime.events import Done, RunEvent
from runtime.storage.base import UsageRecord

if TYPE_CHECKING:
    from runtime.conversation import Conversation

log = logging.getLogger(__name__)

# pending: task not started yet; waiting: for the conversation lock; looping: in the
# agent loop; finishing: saving; finished: Done emitted.
Phase = Literal["pending", "waiting", "looping", "finishing", "finished"]


class Run:
    def __init__(self, conversation: Conversation, *, origin: object | None) -> None:
        self.id = uuid.uuid4().hex
        self.conversation = conversation
        self.origin = origin
        self.started_at = time.time()
        self.usage: list[UsageRecord] = []
        self.phase: Phase = "pending"
        self.cancel_requested = False
        self.task: asyncio.Task[None] | None = None
        self._events: list[RunEvent] = []
        self._subscribers: list[asyncio.Queue[RunEvent]] = []
        self._listeners: list[Callable[[RunEvent], None]] = []
        self._done: Done | None = None
        self._finished = asyncio.Event()

    @property
    def done(self) -> Done | None:
        return self._done

    @property
    def finished(self) -> bool:
        return self._done is not None

    def emit(self, event: RunEvent) -> None:
        if self._done is not None:
            raise RuntimeError("a run emits nothing after its Done event")
        self._events.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)
        for listener in self._listeners:
            _call(listener, event)
        if isinstance(event, Done):
            self._done = event
            self._subscribers.clear()
            self._listeners.clear()
            self._finished.set()

    def listen(self, listener: Callable[[RunEvent], None]) -> None:
        """Call ``listener`` with every event, past ones first, as it is emitted: for a
        watcher that acts on events without a task and a queue of its own. A listener
        that raises is logged; the run and the other listeners go on."""
        for event in self._events:
            _call(listener, event)
        if self._done is None:
            self._listeners.append(listener)

    async def events(self) -> AsyncIterator[RunEvent]:
        """Every event of the run, past and future, ending with ``Done``."""
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        for event in self._events:
            queue.put_nowait(event)
        if self._done is None:
            self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, Done):
                    return
        finally:
            if queue in self._subscribers:
                self._subscribers.remove(queue)

    async def wait(self) -> Done:
        await self._finished.wait()
        assert self._done is not None
        return self._done

    def cancel(self) -> bool:
        """Cancel the agent loop; a run already saving its results is left to finish.
        Returns whether a cancellation was requested."""
        if self.phase not in ("pending", "waiting", "looping") or self.task is None:
            return False
        self.cancel_requested = True
        # A task cancelled before its first step never enters its coroutine, so it could
        # not emit Done; a pending run checks the flag when it starts instead.
        if self.phase != "pending":
            self.task.cancel()
        return True


def _call(listener: Callable[[RunEvent], None], event: RunEvent) -> None:
    try:
        listener(event)
    except Exception:  # a watcher's bug must not fail the run it watches
        log.exception("a run listener failed on %s", type(event).__name__)
