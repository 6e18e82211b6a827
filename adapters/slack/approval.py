"""Approval requests on Slack: a section with Approve / Deny buttons (Block Kit); a
press arrives as ``block_actions`` (Socket Mode envelope or signed HTTP POST, both
through bolt) and is answered with an ephemeral message only the presser sees."""

from __future__ import annotations

import logging
import re
from typing import Any, Final

from slack_sdk.web.async_client import AsyncWebClient

from adapters.approval import ApprovalDecision, ApprovalPrompt, DecisionSink
from adapters.base import InboundSink
from adapters.errors import DeliveryError
from adapters.slack.outbound import api

log = logging.getLogger(__name__)

APPROVE_ACTION: Final = "approval_approve"
DENY_ACTION: Final = "approval_deny"
ACTIONS: Final = re.compile(rf"^({APPROVE_ACTION}|{DENY_ACTION})$")
NOT_RUNNING = "The bot is not ready; try again in a moment."


def question_blocks(prompt: ApprovalPrompt) -> list[dict[str, Any]]:
    def button(label: str, action: str, style: str) -> dict[str, Any]:
        return {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "action_id": action,
            "value": prompt.request_id,
            "style": style,
        }

    return [
        {"type": "section", "text": {"type": "plain_text", "text": prompt.text}},
        {
            "type": "actions",
            "block_id": f"approval-{prompt.request_id}",
            "elements": [
                button("Approve", APPROVE_ACTION, "primary"),
                button("Deny", DENY_ACTION, "danger"),
            ],
        },
    ]


def settled_blocks(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "plain_text", "text": text}}]


def decision_of(body: dict[str, Any]) -> ApprovalDecision | None:
    actions = body.get("actions") or []
    action = actions[0] if actions and isinstance(actions[0], dict) else {}
    user = body.get("user") or {}
    if action.get("action_id") not in (APPROVE_ACTION, DENY_ACTION) or not action.get("value"):
        return None
    return ApprovalDecision(
        platform="slack",
        request_id=str(action["value"]),
        approved=action["action_id"] == APPROVE_ACTION,
        user_id=str(user.get("id", "")),
        user_name=str(user.get("name") or user.get("username") or ""),
    )


async def answer_press(
    client: AsyncWebClient, body: dict[str, Any], sink: InboundSink | None
) -> None:
    decision = decision_of(body)
    if decision is None:
        return
    text = await sink.decide(decision) if isinstance(sink, DecisionSink) else NOT_RUNNING
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    thread_ts = (body.get("message") or {}).get("thread_ts")
    try:
        await api(
            client.chat_postEphemeral(
                channel=str(channel), user=decision.user_id, text=text, thread_ts=thread_ts
            )
        )
    except DeliveryError as exc:
        log.info("could not answer a Slack button press: %s", exc)
