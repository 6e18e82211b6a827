"""Approval in the chat, the adapter side: an optional capability and its inbound path.

An adapter that can show buttons implements ``ApprovalCapable``: ``ask_approval`` posts
the question with Approve / Deny buttons, ``settle_approval`` replaces them with the
outcome. A button press becomes an ``ApprovalDecision`` handed to the sink's ``decide``
(when the sink offers it), whose answer is shown to the presser only (a toast, an
ephemeral message): "only the owner can decide", "already answered".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from adapters.base import ChatTarget, SentMessage

APPROVE = "approve"
DENY = "deny"


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalPrompt:
    request_id: str
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalDecision:
    platform: str
    request_id: str
    approved: bool
    user_id: str
    user_name: str = ""


@runtime_checkable
class ApprovalCapable(Protocol):
    async def ask_approval(self, target: ChatTarget, prompt: ApprovalPrompt) -> SentMessage: ...

    async def settle_approval(self, message: SentMessage, text: str) -> None: ...


@runtime_checkable
class DecisionSink(Protocol):
    async def decide(self, decision: ApprovalDecision) -> str:
        """Apply a button press; returns the short answer for the presser alone."""
        ...


def encode_action(request_id: str, approved: bool) -> str:
    """Button payload (Telegram callback_data, Discord custom_id, Slack value): short."""
    return f"appr:{APPROVE if approved else DENY}:{request_id}"


def decode_action(data: str) -> tuple[str, bool] | None:
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != "appr" or parts[1] not in (APPROVE, DENY):
        return None
    return parts[2], parts[1] == APPROVE
