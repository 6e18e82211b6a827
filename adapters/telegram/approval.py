"""Approval requests on Telegram: an inline keyboard under the question, and the
``callback_query`` a press produces, answered with a toast only the presser sees."""

from __future__ import annotations

import logging

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import TelegramError

from adapters.approval import (
    ApprovalDecision,
    ApprovalPrompt,
    DecisionSink,
    decode_action,
    encode_action,
)
from adapters.base import ChatTarget, InboundSink

log = logging.getLogger(__name__)

NOT_RUNNING = "The bot is not ready; try again in a moment."


def keyboard(request_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Approve", callback_data=encode_action(request_id, True)),
                InlineKeyboardButton("Deny", callback_data=encode_action(request_id, False)),
            ]
        ]
    )


def thread_of(target: ChatTarget) -> int | None:
    return int(target.thread_id) if target.thread_id and target.thread_id.isdigit() else None


async def send_question(bot: Bot, target: ChatTarget, prompt: ApprovalPrompt) -> str:
    """Post the question with its buttons; returns the message id."""
    sent = await bot.send_message(
        chat_id=int(target.chat_id),
        text=prompt.text,
        message_thread_id=thread_of(target),
        reply_markup=keyboard(prompt.request_id),
    )
    return str(sent.message_id)


async def answer_press(bot: Bot, query: CallbackQuery, sink: InboundSink | None) -> None:
    """Apply a button press and answer it (Telegram shows a spinner until answered)."""
    action = decode_action(query.data or "")
    if action is None:
        text = "This button is no longer in use."
    elif not isinstance(sink, DecisionSink):
        text = NOT_RUNNING
    else:
        request_id, approved = action
        decision = ApprovalDecision(
            platform="telegram",
            request_id=request_id,
            approved=approved,
            user_id=str(query.from_user.id),
            user_name=query.from_user.full_name,
        )
        text = await sink.decide(decision)
    try:
        await bot.answer_callback_query(query.id, text=text)
    except TelegramError as exc:  # an answer after ~15 s is refused; the decision stands
        log.info("telegram answerCallbackQuery failed: %s", exc)
