"""Delivery through the real Telegram adapter and the fake Bot API, which counts a
message's length in UTF-16 code units like the real server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from adapters.base import ChatTarget
from adapters.errors import MessageTooLong
from adapters.text.telegram_html import utf16_len
from gateway.delivery import DeliveryOptions
from gateway.reply_messages import UNDELIVERED
from tests.fakes.scripted_provider import Gate, Text
from tests.fakes.telegram_api import MAX_TEXT, FakeTelegram
from tests.runtime_helpers import wait_for
from tests.test_telegram_adapter import JSON, alice, fake, running, texts

__all__ = ["alice", "fake"]  # fixtures, used by name

EMOJI = "\U0001f600"  # outside the BMP: two UTF-16 code units
TOO_LONG = "Bad Request: message is too long"


async def test_the_fake_counts_utf16_code_units(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        target = ChatTarget(platform="telegram", chat_id=str(chat))
        with pytest.raises(MessageTooLong):
            await r.adapter.send(target, EMOJI * 2100, markup=False)  # 2,100 characters
        await r.adapter.send(target, EMOJI * 2048, markup=False)  # 4,096 units: fits


async def test_2100_emoji_are_all_delivered_within_the_limit(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        r.provider.script(Text(EMOJI * 2100))
        fake.user_sends(chat, alice, "smile")
        await wait_for(lambda: "".join(texts(fake, chat)) == EMOJI * 2100)
        sent = texts(fake, chat)
        assert len(sent) == 2
        assert all(utf16_len(text) <= MAX_TEXT for text in sent)
        assert all(call.status == 200 for call in fake.calls("sendMessage"))  # never refused


async def test_message_too_long_is_split_again(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    words = " ".join(f"word{i}" for i in range(500))  # 3,389 characters: one message
    async with running(tmp_path, fake) as r:
        fake.fail_next("sendMessage", status=400, description=TOO_LONG)
        r.provider.script(Text(words))
        fake.user_sends(chat, alice, "talk")
        await wait_for(lambda: " ".join(texts(fake, chat)) == words)
        assert len(texts(fake, chat)) == 2
        refused, *resent = fake.calls("sendMessage")
        assert refused.status == 400
        assert all(call.params["text"] != refused.params["text"] for call in resent)


async def test_a_final_text_that_never_lands_says_so_in_one_sentence(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        fake.fail_next("sendMessage", status=500, description="Internal Server Error", times=3)
        r.provider.script(Text("an answer that cannot land"))
        fake.user_sends(chat, alice, "hello")
        await wait_for(lambda: texts(fake, chat) == [UNDELIVERED], timeout=10)


async def test_delete_removes_the_bots_message(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        target = ChatTarget(platform="telegram", chat_id=str(chat))
        await r.adapter.send(target, "kept", markup=False)
        spilled = await r.adapter.send(target, "spilled", markup=False)
        await r.adapter.delete(spilled)
        assert texts(fake, chat) == ["kept"]


async def test_a_reply_complete_before_anything_shows_is_sent_without_a_draft(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        # The whole reply is in before the run has saved itself: one call, the message.
        r.provider.script(Text("all "), Text("at once"))
        fake.user_sends(chat, alice, "go")
        await fake.wait_for(lambda: texts(fake, chat) == ["all at once"])
        assert fake.transcript(chat).drafts == ()


async def test_a_reply_that_ends_soon_after_its_first_text_is_sent_without_a_draft(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        assert r.gateway.pipeline is not None
        r.gateway.pipeline.delivery = DeliveryOptions(preview_delay=5.0)
        rest = Gate()
        r.provider.script(Text("first"), rest, Text(" and last"))
        fake.user_sends(chat, alice, "go")
        await asyncio.wait_for(rest.reached.wait(), 5)
        rest.release()  # the reply ends within the preview delay: its draft is skipped
        await fake.wait_for(lambda: texts(fake, chat) == ["first and last"])
        assert fake.transcript(chat).drafts == ()


async def test_the_final_message_does_not_wait_for_the_draft_pace(
    tmp_path: Path, fake: FakeTelegram, alice: JSON
) -> None:
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as r:
        assert r.gateway.pipeline is not None
        r.gateway.pipeline.budgets["telegram"].edit_interval = 5.0
        more, end = Gate(), Gate()
        r.provider.script(Text("one"), more, Text(" two"), end, Text(" three"))
        fake.user_sends(chat, alice, "go")
        await fake.wait_for(lambda: fake.transcript(chat).drafts)
        more.release()  # the next draft now waits about 5 s for its turn
        await asyncio.wait_for(end.reached.wait(), 5)
        ended = time.monotonic()
        end.release()
        await fake.wait_for(lambda: texts(fake, chat) == ["one two three"])
        assert time.monotonic() - ended < 2.5  # the final send is not an edit to pace
