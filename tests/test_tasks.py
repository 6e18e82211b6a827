"""TaskSet: background tasks held until they end, cancelled together at shutdown."""

from __future__ import annotations

import asyncio

from runtime.tasks import TaskSet


async def test_a_task_is_held_until_it_ends_and_its_result_is_kept() -> None:
    tasks = TaskSet()
    release = asyncio.Event()

    async def work() -> int:
        await release.wait()
        return 7

    task = tasks.spawn(work(), name="work")
    assert len(tasks) == 1
    assert list(tasks) == [task]
    release.set()
    assert await asyncio.wait_for(task, 5) == 7
    await asyncio.sleep(0)  # done callbacks run on the loop's next turn
    assert len(tasks) == 0


async def test_wait_is_bounded_and_cancel_ends_what_still_runs() -> None:
    tasks = TaskSet()
    stuck = tasks.spawn(asyncio.Event().wait(), name="stuck")
    quick = tasks.spawn(asyncio.sleep(0, result=None), name="quick")
    await tasks.wait(0.05)  # returns although "stuck" never ends
    assert quick.done()
    assert not stuck.done()
    await tasks.cancel()
    assert stuck.cancelled()
    assert len(tasks) == 0
