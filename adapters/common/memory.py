"""What an adapter remembers between events: ids seen lately (redelivery dedup) and the
threads the bot owns (answered without a mention), the latter also in storage so it
survives a restart."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Final

from runtime.errors import AgentRuntimeError
from runtime.storage.base import Storage

log = logging.getLogger(__name__)

REMEMBERED: Final = 10_000


class Recent:
    """A bounded set of what was seen lately; the oldest is forgotten first."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, item: str) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: str) -> bool:
        """False when it was already there (it then counts as seen just now)."""
        if item in self._items:
            self._items.move_to_end(item)
            return False
        self._items[item] = None
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return True

    def discard(self, item: str) -> None:
        self._items.pop(item, None)


class ThreadOwnership:
    """Threads the bot answers in without a mention, keyed per platform (a Discord
    thread id, a Slack ``<channel>:<ts>``). Memory first, then the storage binding; a
    storage failure is logged and read as "not owned", never raised into a handler."""

    def __init__(self, platform: str, storage: Storage | None, size: int = REMEMBERED) -> None:
        self._platform = platform
        self._storage = storage
        self._owned = Recent(size)

    async def owns(self, key: str) -> bool:
        if key in self._owned:
            return True
        if self._storage is None:
            return False
        try:
            bound = await self._storage.get_binding(self._platform, key)
        except AgentRuntimeError as exc:
            log.warning("could not read the %s thread binding %s: %s", self._platform, key, exc)
            return False
        if bound is not None:
            self._owned.add(key)
        return bound is not None

    async def claim(self, key: str, scope: str) -> None:
        if not self._owned.add(key) or self._storage is None:
            return
        try:
            await self._storage.bind_thread(self._platform, key, scope)
        except AgentRuntimeError as exc:
            log.warning("could not remember the %s thread %s: %s", self._platform, key, exc)
