"""Steering: messages that arrive while a run is active wait here, in order.

A FIFO, not a latest-value slot: every message is kept. The running loop drains it before
each model call; whatever is still queued when the run ends starts the next run. All
access happens on the event loop thread, so plain deque operations are atomic with
respect to the run's end-of-run check.
"""

from __future__ import annotations

from collections import deque

from runtime.messages import UserMessage


class SteeringQueue:
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: deque[UserMessage] = deque()

    def put(self, message: UserMessage) -> int:
        """Queue a message; returns its 1-based position."""
        self._items.append(message)
        return len(self._items)

    def peek_origin(self) -> object | None:
        return self._items[0].origin if self._items else None

    def drain(self) -> list[UserMessage]:
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)
