"""Approval requests in the web chat: a question frame with buttons, and the decision
frame a press sends back, answered with a notice to the tab that pressed."""

from __future__ import annotations

from adapters.approval import ApprovalDecision, ApprovalPrompt, DecisionSink
from adapters.base import InboundSink
from adapters.webchat.frames import DecisionFrame, Frame


def question_frame(message_id: str, prompt: ApprovalPrompt) -> Frame:
    return {
        "type": "approval",
        "id": message_id,
        "request_id": prompt.request_id,
        "text": prompt.text,
    }


def settled_frame(message_id: str, text: str) -> Frame:
    """Replaces the question (and its buttons) by the outcome."""
    return {"type": "approval_settled", "id": message_id, "text": text}


async def decide(
    sink: InboundSink | None, frame: DecisionFrame, *, client_id: str, user_name: str
) -> Frame:
    """Hand a press to the gateway; the frame to show the tab that pressed."""
    if not isinstance(sink, DecisionSink):
        return {"type": "error", "text": "The web chat is not running."}
    decision = ApprovalDecision(
        platform="webchat",
        request_id=frame.request_id,
        approved=frame.approved,
        user_id=client_id,
        user_name=user_name,
    )
    return {"type": "notice", "text": await sink.decide(decision)}
