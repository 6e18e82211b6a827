"""The per-chat outbound budget: edit pacing from real starts, 429s, skips."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import adapters.telegram.adapter as telegram_adapter
from adapters.base import ChatTarget, SentMessage
from adapters.errors import RateLimited
from adapters.telegram.adapter import TelegramAdapter, TelegramSettings
from gateway.budget import OutboundBudget
from gateway.metrics import Metrics
from tests.fakes.telegram_api import FakeTelegram
from tests.runtime_helpers import wait_for

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


async def test_calls_in_flight_per_platform_are_bounded_and_wait_for_a_slot() -> None:
    budget = OutboundBudget(Metrics(), platform="p", concurrency=3)
    in_flight = peak = 0
    release = asyncio.Event()

    async def send() -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return "sent"

    calls = [asyncio.create_task(budget.call(f"chat{i}", "send", send)) for i in range(10)]
    await wait_for(lambda: in_flight == 3)
    release.set()
    assert await asyncio.gather(*calls) == ["sent"] * 10
    assert peak == 3


class SlowTelegram(FakeTelegram):
    """Answers sendMessage after a delay, like a Bot API under load."""

    async def _dispatch(self, token: str, method: str, params: Any) -> Any:
        if method.lower() == "sendmessage":
            await asyncio.sleep(0.2)
        return await super()._dispatch(token, method, params)


async def test_a_burst_waits_for_a_slot_instead_of_failing_on_the_pool_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pool timeout far shorter than one slow call: any request that waits inside
    # httpx's pool fails, so only the budget's bound keeps every send alive.
    monkeypatch.setattr(telegram_adapter, "POOL_WAIT", 0.05)
    budget = OutboundBudget(Metrics(), platform="telegram")
    assert budget.concurrency < telegram_adapter.POOL_SIZE
    async with SlowTelegram() as fake:
        users = [fake.make_user(f"User {i}") for i in range(3 * telegram_adapter.POOL_SIZE)]
        chats = [fake.private_chat(user) for user in users]
        settings = TelegramSettings(
            token=fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url
        )
        adapter = TelegramAdapter(settings)
        async with adapter.bot:

            def sender(chat: int) -> Callable[[], Awaitable[SentMessage]]:
                target = ChatTarget(platform="telegram", chat_id=str(chat))
                return lambda: adapter.send(target, "hi", markup=False)

            sends = [budget.call(str(chat), "send", sender(chat)) for chat in chats]
            sent = await asyncio.wait_for(asyncio.gather(*sends), 30)
        assert all(isinstance(message, SentMessage) for message in sent)
        assert all(len(fake.sent_messages(chat)) == 1 for chat in chats)


async def test_waiting_sends_go_before_waiting_edits_of_other_chats() -> None:
    budget = OutboundBudget(Metrics(), platform="mem", edit_interval=0, concurrency=1)
    release = asyncio.Event()
    order: list[str] = []

    async def blocker() -> None:
        await release.wait()

    def record(name: str) -> Callable[[], Awaitable[None]]:
        async def op() -> None:
            order.append(name)

        return op

    holder = asyncio.create_task(budget.call("a", "send", blocker))
    await asyncio.sleep(0)  # the holder takes the only slot
    assert budget.crowded
    edit = asyncio.create_task(budget.call("b", "edit", record("edit b")))
    typing = asyncio.create_task(budget.call("c", "typing", record("typing c")))
    send = asyncio.create_task(budget.call("d", "send", record("send d")))
    for _ in range(3):
        await asyncio.sleep(0)  # all three are waiting for the slot
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, edit, typing, send), 5)
    assert order == ["send d", "edit b", "typing c"]
    assert not budget.crowded


async def test_a_waiting_call_cancelled_as_the_slot_frees_ends_cancelled() -> None:
    budget = OutboundBudget(Metrics(), platform="mem", edit_interval=0, concurrency=1)
    release = asyncio.Event()

    async def blocker() -> None:
        await release.wait()

    async def never() -> None:
        raise AssertionError("a cancelled call must not run")

    holder = asyncio.create_task(budget.call("a", "send", blocker))
    await asyncio.sleep(0)  # the holder takes the only slot
    waiting = asyncio.create_task(budget.call("b", "edit", never))
    await asyncio.sleep(0)  # the edit waits for the slot
    release.set()  # the holder ends first and frees the slot...
    waiting.cancel()  # ...while the waiting call is being cancelled
    await asyncio.wait_for(holder, 5)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not budget.crowded  # the slot came back
    sent: list[str] = []

    async def send() -> None:
        sent.append("c")

    await asyncio.wait_for(budget.call("c", "send", send), 5)
    assert sent == ["c"]
