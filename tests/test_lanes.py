"""Per-chat FIFO lanes: order within a chat, no waiting across chats, nothing kept idle."""

from __future__ import annotations

import asyncio

from gateway.lanes import Lanes
from tests.runtime_helpers import wait_for


async def test_a_lane_keeps_arrival_order_and_chats_do_not_wait_on_each_other() -> None:
    done: list[str] = []
    slow_chat_may_go = asyncio.Event()

    async def work(item: tuple[str, str]) -> None:
        chat, text = item
        if text == "slow":
            await slow_chat_may_go.wait()
        done.append(f"{chat}:{text}")

    lanes: Lanes[tuple[str, str]] = Lanes(work)
    lanes.put("a", ("a", "slow"))
    lanes.put("a", ("a", "second"))
    lanes.put("b", ("b", "quick"))
    # chat b is answered while chat a is still busy with its first message
    await wait_for(lambda: done == ["b:quick"])
    slow_chat_may_go.set()
    assert await lanes.join(5)
    assert done == ["b:quick", "a:slow", "a:second"]
    assert len(lanes) == 0  # idle lanes cost nothing


async def test_a_failing_item_does_not_stop_its_lane() -> None:
    done: list[int] = []

    async def work(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        done.append(item)

    lanes: Lanes[int] = Lanes(work)
    for item in range(3):
        lanes.put("chat", item)
    assert await lanes.join(5)
    assert done == [0, 2]


async def test_join_times_out_and_cancel_drops_the_lane() -> None:
    never = asyncio.Event()

    async def work(item: int) -> None:
        await never.wait()

    lanes: Lanes[int] = Lanes(work)
    lanes.put("chat", 1)
    lanes.put("chat", 2)
    assert not await lanes.join(0.05)
    assert lanes.pending() == 2
    await lanes.cancel()
    assert len(lanes) == 0
    assert await lanes.join(0)
