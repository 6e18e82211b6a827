from __future__ import annotations

import asyncio

import pytest

from runtime.storage.base import InboxState
from runtime.storage.group_settle import GroupSettle


class Recorder:
    """A write that holds until released, recording what each write carried."""

    def __init__(self, *, fail: bool = False) -> None:
        self.writes: list[tuple[list[str], InboxState]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, ids: list[str], state: InboxState) -> None:
        self.writes.append((ids, state))
        await self.release.wait()
        if self.fail:
            raise RuntimeError("disk full")


async def test_settles_waiting_on_a_write_go_together_in_the_next() -> None:
    write = Recorder()
    group = GroupSettle(write)
    first = asyncio.create_task(group.settle(["a"], "answered"))
    await asyncio.sleep(0)  # lets the writer start the first write
    later = [asyncio.create_task(group.settle([x], "answered")) for x in "bcd"]
    await asyncio.sleep(0)
    assert write.writes == [(["a"], "answered")]
    assert not any(task.done() for task in [first, *later])  # none acknowledged early
    write.release.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert write.writes == [(["a"], "answered"), (["b", "c", "d"], "answered")]


async def test_states_keep_their_order() -> None:
    write = Recorder()
    write.release.set()
    group = GroupSettle(write)
    await asyncio.wait_for(
        asyncio.gather(
            group.settle(["a"], "answered"),
            group.settle(["b"], "expired"),
            group.settle(["a"], "expired"),
            group.settle(["c"], "answered"),
        ),
        5,
    )
    assert write.writes == [
        (["a"], "answered"),
        (["b", "a"], "expired"),
        (["c"], "answered"),
    ]


async def test_a_failed_write_fails_every_settle_in_it_and_the_next_write_goes_on() -> None:
    write = Recorder(fail=True)
    group = GroupSettle(write)
    settles = [asyncio.create_task(group.settle([x], "answered")) for x in "ab"]
    write.release.set()
    results = await asyncio.wait_for(asyncio.gather(*settles, return_exceptions=True), 5)
    assert [str(r) for r in results] == ["disk full", "disk full"]
    write.fail = False
    await asyncio.wait_for(group.settle(["c"], "answered"), 5)
    assert write.writes[-1] == (["c"], "answered")


async def test_a_cancelled_caller_leaves_the_others_settled() -> None:
    write = Recorder()
    group = GroupSettle(write)
    gone = asyncio.create_task(group.settle(["a"], "answered"))
    kept = asyncio.create_task(group.settle(["b"], "answered"))
    await asyncio.sleep(0)
    gone.cancel()
    write.release.set()
    await asyncio.wait_for(kept, 5)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert write.writes == [(["a", "b"], "answered")]
