"""Streaming delivery: coalesced paced edits, 429s, markup fallback, splitting, failures."""

from __future__ import annotations

import asyncio
import itertools
import time

from adapters.errors import (
    DeliveryError,
    MarkupRejected,
    MessageNotModified,
    MessageTooLong,
    NotAllowed,
    RateLimited,
)
from gateway.delivery import FAILED_REPLY, MAX_ITERATIONS_NOTE, DeliveryOptions
from gateway.policy import AdapterPolicy
from gateway.reply_messages import RETIRED, UNDELIVERED
from runtime.errors import ProviderStreamError
from tests.fakes.scripted_provider import Call, Fail, Gate, ScriptedProvider, Text
from tests.pipeline_helpers import Rig, dm, rig
from tests.runtime_helpers import wait_for

INTERVAL = 0.2


def paced() -> AdapterPolicy:
    return AdapterPolicy(name="mem", edit_interval=INTERVAL)


async def stream_words(provider: ScriptedProvider, words: int, gates: list[Gate]) -> None:
    steps: list[Text | Gate] = []
    for i in range(words):
        steps.append(Text(f"w{i} "))
        if i % 5 == 4:
            gate = Gate()
            gates.append(gate)
            steps.append(gate)
    provider.script(*steps)


async def show_start(r: Rig) -> Gate:
    """A reply that shows "start", then waits at the returned gate before " finish"."""
    gate = Gate()
    r.provider.script(Text("start"), gate, Text(" finish"))
    await r.adapter.deliver(dm("go"))
    await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["start"])
    return gate


async def test_edits_are_coalesced_and_paced_per_chat() -> None:
    async with rig(policy=paced()) as r:
        gates: list[Gate] = []
        await stream_words(r.provider, 40, gates)
        await r.adapter.deliver(dm("go"))
        for gate in gates:  # release a burst every 50 ms: faster than the edit pace
            await asyncio.wait_for(gate.reached.wait(), 5)
            await asyncio.sleep(0.05)
            gate.release()
        expected = " ".join(f"w{i}" for i in range(40))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == [expected])
        times = [t for t, _, _ in r.adapter.edits]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= INTERVAL * 0.9 for gap in gaps), gaps
        assert len(r.adapter.edits) < 40 / 5  # coalesced: fewer edits than bursts
        texts = [text for _, _, text in r.adapter.edits]
        assert len(texts) == len(set(texts))  # never an edit with unchanged text


async def test_a_429_on_edit_is_honoured_counted_and_the_final_text_lands() -> None:
    async with rig(policy=paced()) as r:
        gate = Gate()
        r.provider.script(Text("part one"), gate, Text(" and part two"))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["part one"])
        r.adapter.fail_next("edit", RateLimited(0.3))
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["part one and part two"])
        assert r.pipeline.metrics.rate_limited.value("mem") == 1
        [shown] = r.adapter.messages.values()
        first_edit_at = shown.history[1][0]
        assert first_edit_at - shown.history[0][0] >= 0.3


async def test_markup_rejected_falls_back_to_plain_text() -> None:
    async with rig(markup="telegram_html") as r:
        r.provider.script(Text("**bold** move"))
        r.adapter.fail_next("send", MarkupRejected("can't parse entities"))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["bold move"])
        [shown] = r.adapter.messages.values()
        assert shown.markup is False


async def test_markup_is_rendered_for_the_platform() -> None:
    async with rig(markup="telegram_html") as r:
        r.provider.script(Text("**bold** & <tag>"))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(
            lambda: r.adapter.chat("dm42") == ["<b>bold</b> &amp; &lt;tag&gt;"]
        )


async def test_not_modified_from_the_platform_is_ignored_not_retried() -> None:
    async with rig(policy=paced()) as r:
        gate = Gate()
        r.provider.script(Text("one"), gate, Text(" two"))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["one"])
        r.adapter.fail_next("edit", MessageNotModified("message is not modified"))
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.typing_calls and not r.runtime.active_runs())
        await asyncio.wait_for(r.pipeline.drain(grace=2), 5)
        assert r.adapter.edits == []  # the one edit "failed" as not modified; no retry loop


async def test_long_replies_are_split_under_the_limit() -> None:
    async with rig(limit=120) as r:
        paragraphs = [f"Paragraph {i}: " + "word " * 12 for i in range(6)]
        r.provider.script(*[Text(p.strip() + "\n\n") for p in paragraphs])
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(lambda: not r.runtime.active_runs() and r.adapter.chat("dm42"))
        await asyncio.wait_for(r.pipeline.drain(grace=2), 5)
        chat = r.adapter.chat("dm42")
        assert len(chat) > 1
        assert all(len(m) <= 120 for m in chat)
        assert "\n\n".join(chat).split() == "\n\n".join(paragraphs).split()
        assert not any("(1/" in m for m in chat)  # no page markers


async def test_a_failed_edit_is_retried_so_the_final_text_lands() -> None:
    async with rig(policy=paced()) as r:
        gate = await show_start(r)
        r.adapter.fail_next("edit", DeliveryError("server error"))
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["start finish"])


async def test_model_failure_mid_stream_keeps_text_and_says_so_in_one_sentence() -> None:
    async with rig() as r:
        r.provider.script(Text("half an answer"), Fail(ProviderStreamError("socket closed")))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(
            lambda: r.adapter.chat("dm42") == [f"half an answer\n\n{FAILED_REPLY}"]
        )
        assert "socket closed" not in r.adapter.chat("dm42")[0]  # detail stays in the log
        await r.adapter.deliver(dm("again"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42")[-1] == "ok")


async def test_tool_progress_is_shown_then_replaced_by_the_answer() -> None:
    async with rig() as r:
        gate = Gate()
        r.provider.script(Call("get_time"), gate)
        r.provider.script(Text("It is noon."))
        await r.adapter.deliver(dm("time?"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["_using get_time..._"])
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["It is noon."])


async def test_max_iterations_is_explained() -> None:
    async with rig(max_iterations=2) as r:
        r.provider.script(Call("get_time"))
        r.provider.script(Call("get_time"))
        await r.adapter.deliver(dm("loop"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == [MAX_ITERATIONS_NOTE])


async def test_an_edit_the_budget_gave_up_on_is_not_counted_as_shown() -> None:
    """Five 429s in a row exhaust the budget's attempts; the text is not recorded as
    shown, so the flush loop tries again and the final text still lands."""
    async with rig(policy=paced()) as r:
        gate = await show_start(r)
        for _ in range(5):
            r.adapter.fail_next("edit", RateLimited(0.01))
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["start finish"])
        assert r.pipeline.metrics.rate_limited.value("mem") == 5
        assert r.pipeline.metrics.edits.value("mem") == 1


# -- a reply is never silent (issue 10.4) ------------------------------------------------

BODY = " ".join(f"word{i}" for i in range(20))  # 129 characters


async def spill_then_shrink(r: Rig) -> None:
    """A reply near the limit whose tool status spills into a second message, then
    goes away when the short answer replaces it."""
    gate = Gate()
    r.provider.script(Text(BODY), Call("get_time"), gate)
    r.provider.script(Text("ok"))
    await r.adapter.deliver(dm("go"))
    await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == [BODY, "_using get_time..._"])
    gate.release()


async def test_a_shrinking_reply_deletes_the_message_it_spilled_into() -> None:
    async with rig(limit=140) as r:
        await spill_then_shrink(r)
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == [f"{BODY}\n\nok"])
        assert len(r.adapter.deleted) == 1


async def test_a_spilled_message_that_cannot_be_deleted_is_emptied() -> None:
    async with rig(limit=140) as r:
        r.adapter.fail_next("delete", NotAllowed("too old to delete"))
        await spill_then_shrink(r)
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == [f"{BODY}\n\nok", RETIRED])
        assert r.adapter.deleted == []


async def test_message_too_long_is_split_again_not_retried_as_is() -> None:
    async with rig(limit=200) as r:
        r.adapter.fail_next("send", MessageTooLong("message is too long"))
        r.provider.script(Text(BODY))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(lambda: not r.runtime.active_runs() and r.adapter.chat("dm42"))
        await asyncio.wait_for(r.pipeline.drain(grace=2), 5)
        chat = r.adapter.chat("dm42")
        assert len(chat) == 2  # split smaller after the refusal: never the same text again
        assert " ".join(chat) == BODY


async def test_a_final_text_that_never_lands_is_one_short_sentence() -> None:
    async with rig(policy=paced()) as r:
        gate = await show_start(r)
        for _ in range(3):
            r.adapter.fail_next("edit", DeliveryError("server error"))
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["start", UNDELIVERED])


# -- typing indicator ------------------------------------------------------------------


def typing_after(delay: float) -> DeliveryOptions:
    return DeliveryOptions(typing_interval=0.2, typing_delay=delay)


async def test_a_reply_visible_at_once_sends_no_typing_indicator() -> None:
    async with rig(delivery=typing_after(0.3)) as r:
        gate = await show_start(r)
        await asyncio.sleep(0.5)  # past the typing delay, with text on screen
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["start finish"])
        await asyncio.wait_for(r.pipeline.drain(grace=2), 5)
        assert r.adapter.typing_calls == []


async def test_typing_shows_only_when_nothing_is_visible_after_the_delay() -> None:
    async with rig(delivery=typing_after(0.3)) as r:
        gate = Gate()
        r.provider.script(gate, Text("late"))
        sent = time.monotonic()
        await r.adapter.deliver(dm("go"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        await r.adapter.wait_for(lambda: r.adapter.typing_calls)
        first = r.adapter.typing_calls[0]
        assert first[2] is True
        assert first[0] - sent >= 0.3  # waited for the delay, not sent with the message
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["late"])
        await r.adapter.wait_for(lambda: r.adapter.typing_calls[-1][2] is False)


async def test_under_load_a_draft_preview_is_held_so_the_reply_costs_one_send() -> None:
    async with rig() as r:
        r.adapter.drafts = []  # previews are drafts the final message does not reuse
        budget = r.pipeline.budgets["mem"]
        release = asyncio.Event()

        async def in_flight() -> None:
            await release.wait()

        # Other chats' calls hold every slot of the platform.
        others = [
            asyncio.create_task(budget.call(f"other{i}", "send", in_flight))
            for i in range(budget.concurrency)
        ]
        await wait_for(lambda: budget.crowded)
        gate = Gate()
        r.provider.script(Text("start"), gate, Text(" finish"))
        await r.adapter.deliver(dm("go"))
        await asyncio.wait_for(gate.reached.wait(), 5)  # "start" is in, the run goes on
        gate.release()
        await wait_for(lambda: not r.runtime.active_runs())
        release.set()
        await asyncio.gather(*others)
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["start finish"])
        await asyncio.wait_for(r.pipeline.drain(grace=2), 5)
        assert r.adapter.drafts == []  # no draft "start" before the final text
