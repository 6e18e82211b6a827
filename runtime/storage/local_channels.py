"""NOTIFY/LISTEN inside one process, for the single-process SQLite backend.

A notification is delivered with ``loop.call_soon``, never inside ``notify``: listeners
run after the notifier's await, as they would with PostgreSQL, so no caller depends on
a callback having run synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from runtime.storage.base import NotifyCallback, Unlisten

_log = logging.getLogger(__name__)


class LocalChannels:
    def __init__(self) -> None:
        self._listeners: defaultdict[str, list[NotifyCallback]] = defaultdict(list)

    def notify(self, channel: str, payload: str) -> None:
        loop = asyncio.get_running_loop()
        for callback in list(self._listeners.get(channel, ())):
            loop.call_soon(_deliver, callback, channel, payload)

    def listen(self, channel: str, callback: NotifyCallback) -> Unlisten:
        self._listeners[channel].append(callback)

        async def unlisten() -> None:
            with contextlib.suppress(ValueError):  # unlistened twice: already gone
                self._listeners[channel].remove(callback)

        return unlisten

    def clear(self) -> None:
        self._listeners.clear()


def _deliver(callback: NotifyCallback, channel: str, payload: str) -> None:
    # A failing listener must not stop the others (nor the loop's other callbacks).
    try:
        callback(payload)
    except Exception:
        _log.exception("listener of storage channel %r failed", channel)
