"""Inbox settles written together (group commit).

While one settle is being written, later ones wait in arrival order; the next write
takes the run of waiting settles that share a state, in one statement. Each caller still
returns only once its own ids are written, or gets that write's error, so nothing is
acknowledged early. A burst of runs ending then costs a few commits instead of one each.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from runtime.storage.base import InboxState

Write = Callable[[list[str], InboxState], Awaitable[None]]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Waiting:
    ids: Sequence[str]
    state: InboxState
    done: asyncio.Future[None]


class GroupSettle:
    def __init__(self, write: Write) -> None:
        self._write = write
        self._waiting: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def settle(self, ids: Sequence[str], state: InboxState) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(ids=ids, state=state, done=done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="inbox-settle")
        await done

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._take()
            ids = list(dict.fromkeys(i for item in batch for i in item.ids))
            try:
                await self._write(ids, batch[0].state)
            except asyncio.CancelledError:
                for item in [*batch, *self._waiting]:
                    item.done.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            for item in batch:
                if not item.done.done():
                    item.done.set_result(None)

    def _take(self) -> list[_Waiting]:
        # Only a leading run of one state: a later settle of the same id to another
        # state must still be written after this one.
        batch = [self._waiting.popleft()]
        while self._waiting and self._waiting[0].state == batch[0].state:
            batch.append(self._waiting.popleft())
        return batch
