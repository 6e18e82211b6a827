"""Approval on Telegram end to end: a real Gateway and python-telegram-bot against the
fake Bot API; the question carries an inline keyboard and a press arrives as a
``callback_query`` through getUpdates, answered with a toast for the presser."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from runtime.history import ToolResultEntry
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.fakes.telegram_api import FakeTelegram
from tests.gateway_config import (
    fake_mcp_server,
    running_telegram,
    telegram_section,
    write_gateway_toml,
)
from tests.runtime_helpers import wait_for

JSON = dict[str, Any]
SECRET = "hook-secret_42"


@pytest.fixture
def fake(telegram: FakeTelegram) -> FakeTelegram:
    """This file's name for the fake Bot API (``telegram`` in conftest)."""
    return telegram


@asynccontextmanager
async def running(
    tmp_path: Path, fake: FakeTelegram, approval_timeout: float = 30, extra: str = ""
) -> AsyncIterator[tuple[ScriptedProvider, Gateway]]:
    path = write_gateway_toml(
        tmp_path,
        fake_mcp_server(),
        telegram_section(fake, extra),
        agent_keys=f'model = "echo"\napprove = ["get_time"]\napproval_timeout = {approval_timeout}',
    )
    config = load_config(path, {"TELEGRAM_BOT_TOKEN": fake.token})
    async with running_telegram(config) as run:
        yield run.provider, run.gateway


def question(fake: FakeTelegram, chat: int) -> JSON | None:
    for sent in fake.sent_messages(chat):
        message = fake.message(chat, sent.message_id)
        if message is not None and "wants to run" in message["text"]:
            return message
    return None


def buttons(message: JSON) -> list[tuple[str, str]]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


def edited(fake: FakeTelegram, chat: int, message_id: int) -> JSON | None:
    message = fake.message(chat, message_id)
    return message if message is not None and "edit_date" in message else None


def last_result(provider: ScriptedProvider) -> ToolResultEntry:
    entries = [e for e in provider.requests[-1].messages if isinstance(e, ToolResultEntry)]
    return entries[-1]


async def test_inline_keyboard_only_the_owner_decides(tmp_path: Path, fake: FakeTelegram) -> None:
    alice, bob = fake.make_user("Alice"), fake.make_user("Bob")
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake) as (provider, _gateway):
        provider.script(Call("fake__add", '{"a": 40, "b": 2}'))
        provider.script(Text("Here is the sum."))
        fake.user_sends(chat, alice, "what time is it?")
        asked = await fake.wait_for(lambda: question(fake, chat))
        assert asked["text"] == (
            'The agent wants to run fake__add with {"a": 40, "b": 2}. Allow it?'
        )
        (approve_label, approve), (deny_label, _) = buttons(asked)
        assert (approve_label, deny_label) == ("Approve", "Deny")
        refused = fake.user_presses(chat, bob, asked["message_id"], approve)
        await fake.wait_for(lambda: refused in fake.callback_answers)
        assert fake.callback_answers[refused]["text"].startswith("Only the person")
        accepted = fake.user_presses(chat, alice, asked["message_id"], approve)
        await fake.wait_for(lambda: accepted in fake.callback_answers)
        assert fake.callback_answers[accepted]["text"] == "Approved."
        await fake.wait_for(
            lambda: "Here is the sum." in [m.text for m in fake.sent_messages(chat)]
        )
        settled = await fake.wait_for(lambda: edited(fake, chat, asked["message_id"]))
        assert settled["text"] == "fake__add: approved by Alice."
        assert "reply_markup" not in settled  # the keyboard is gone
        result = last_result(provider)
        assert not result.is_error
        assert result.content == "42"


async def test_no_press_before_the_timeout_is_a_denial(tmp_path: Path, fake: FakeTelegram) -> None:
    alice = fake.make_user("Alice")
    chat = fake.private_chat(alice)
    async with running(tmp_path, fake, approval_timeout=0.3) as (provider, _gateway):
        provider.script(Call("get_time"))
        provider.script(Text("No time for you."))
        fake.user_sends(chat, alice, "time?")
        asked = await fake.wait_for(lambda: question(fake, chat))
        await fake.wait_for(
            lambda: (
                (fake.message(chat, asked["message_id"]) or {}).get("text")
                == "get_time: no answer in time, denied."
            )
        )
        await wait_for(lambda: len(provider.requests) == 2)
        result = last_result(provider)
        assert result.is_error
        assert "nobody approved 'get_time' within 0.3 seconds" in result.content


async def test_webhook_mode_takes_button_presses_too(tmp_path: Path, fake: FakeTelegram) -> None:
    alice = fake.make_user("Alice")
    chat = fake.private_chat(alice)
    public = "https://gateway.example/telegram/webhook"
    extra = f'mode = "webhook"\nwebhook_secret = "{SECRET}"\nwebhook_url = "{public}"'
    async with running(tmp_path, fake, extra=extra) as (provider, gateway):
        await fake.wait_for(lambda: fake.webhook_url == public)
        (set_webhook,) = [c for c in fake.calls("setWebhook") if c.status == 200]
        allowed = set_webhook.params["allowed_updates"]
        assert "callback_query" in (json.loads(allowed) if isinstance(allowed, str) else allowed)
        server = gateway.server
        assert server is not None
        url = f"{server.url}/telegram/webhook"
        provider.script(Call("get_time"))
        provider.script(Text("Done via webhook."))
        update = {"update_id": 1, "message": fake.user_sends(chat, alice, "time?")}
        assert await fake.deliver_webhook(url, update, secret_token=SECRET) == 200
        asked = await fake.wait_for(lambda: question(fake, chat))
        query_id = fake.user_presses(chat, alice, asked["message_id"], buttons(asked)[0][1])
        press = next(u for u in fake.all_updates if "callback_query" in u)
        assert press["callback_query"]["id"] == query_id
        assert await fake.deliver_webhook(url, press, secret_token=SECRET) == 200
        await fake.wait_for(lambda: query_id in fake.callback_answers)
        assert fake.callback_answers[query_id]["text"] == "Approved."
        await fake.wait_for(
            lambda: "Done via webhook." in [m.text for m in fake.sent_messages(chat)]
        )
