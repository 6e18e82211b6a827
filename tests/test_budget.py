"""The per-chat outbound budget: edit pacing from real starts, 429s, skips."""

from __future__ import annotations

import asyncio
import itertools
import time

from adapters.errors import RateLimited
from gateway.budget import OutboundBudget
from gateway.metrics import Metrics

INTERVAL = 0.05


async def test_edits_in_one_chat_are_paced_from_when_each_really_started() -> None:
    budget = OutboundBudget(Metrics(), platform="p", edit_interval=INTERVAL)
    starts: list[float] = []

    async def slow_edit() -> None:
        starts.append(time.monotonic())
        await asyncio.sleep(INTERVAL / 2)  # a slow platform call

    await asyncio.gather(*(budget.call("chat", "edit", slow_edit) for _ in range(5)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 5
    assert all(gap >= INTERVAL for gap in gaps), gaps


async def test_other_chats_are_not_held_back() -> None:
    budget = OutboundBudget(Metrics(), platform="p", edit_interval=10.0)

    async def edit() -> str:
        return "done"

    assert await budget.call("a", "edit", edit) == "done"
    # a second edit in chat "a" would wait 10 s; chat "b" goes at once
    assert await asyncio.wait_for(budget.call("b", "edit", edit), 1.0) == "done"


async def test_a_429_blocks_the_chat_then_the_send_lands_and_is_counted() -> None:
    metrics = Metrics()
    budget = OutboundBudget(metrics, platform="p")
    calls: list[float] = []

    async def send() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RateLimited(0.1)
        return "sent"

    assert await budget.call("chat", "send", send) == "sent"
    assert calls[1] - calls[0] >= 0.1
    assert metrics.rate_limited.value("p") == 1
    assert budget.blocked_for("other") == 0


async def test_decorations_are_skipped_while_blocked_and_long_renames_are_skipped() -> None:
    budget = OutboundBudget(Metrics(), platform="p", rename_max_wait=1.0)

    async def limited() -> str:
        raise RateLimited(300)

    async def never() -> str:
        raise AssertionError("must be skipped while the chat is blocked")

    assert await budget.call("chat", "rename", limited) is None  # 300 s: not waited on
    assert budget.blocked_for("chat") > 250
    assert await budget.call("chat", "typing", never) is None
    assert await budget.call("chat", "react", never) is None
    assert await asyncio.wait_for(budget.call("chat", "rename", never), 1.0) is None


async def test_repeated_429s_without_retry_after_back_off_instead_of_hammering() -> None:
    budget = OutboundBudget(Metrics(), platform="p")
    calls: list[float] = []

    async def send() -> str:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise RateLimited(0)  # a platform that says "retry now", three times
        return "sent"

    assert await budget.call("chat", "send", send) == "sent"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # the shared backoff: 0.05 s doubling, jittered down by at most half
    assert gaps[0] >= 0.025
    assert gaps[2] >= 0.1
    assert sum(gaps) < 2.0
