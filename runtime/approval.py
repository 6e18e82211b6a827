"""Approval of tool calls by the conversation's owner, asked in the chat.

How the pieces interact. When the agent loop is about to run a tool marked ``approve``,
it opens a request on the runtime's ``ApprovalBroker`` (a future keyed by a fresh id),
emits ``ApprovalRequested`` on the run and waits for the future, at most the agent's
``approval_timeout``. The gateway renders the event as buttons; a button press comes back
as ``AgentRuntime.decide(request_id, approved, by)``, which resolves the future only if
``by`` is the owner (the speaker whose message started the run). Whatever ends the wait
(a decision, the timeout, ``/stop``) the loop emits ``ApprovalResolved`` so the buttons
can be replaced by the outcome. Steering is untouched: messages queue as usual.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Literal

DecideOutcome = Literal["approved", "denied", "not_owner", "unknown"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequest:
    id: str
    conversation_id: str
    tool: str
    arguments: str  # raw JSON, as the model wrote it
    owner: str | None  # the speaker id allowed to decide; None: anyone in the chat
    timeout: float

    def prompt(self, limit: int = 500) -> str:
        args = self.arguments.strip() or "{}"
        if len(args) > limit:
            args = args[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
        return f"The agent wants to run {self.tool} with {args}. Allow it?"


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    approved: bool
    by: str | None


class ApprovalBroker:
    """Requests waiting for a decision, process-wide (request ids are unguessable)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[ApprovalRequest, asyncio.Future[Verdict]]] = {}

    def open(
        self, *, conversation_id: str, tool: str, arguments: str, owner: str | None, timeout: float
    ) -> tuple[ApprovalRequest, asyncio.Future[Verdict]]:
        request = ApprovalRequest(
            id=uuid.uuid4().hex[:16],
            conversation_id=conversation_id,
            tool=tool,
            arguments=arguments,
            owner=owner,
            timeout=timeout,
        )
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = (request, future)
        return request, future

    def close(self, request_id: str) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    def get(self, request_id: str) -> ApprovalRequest | None:
        entry = self._pending.get(request_id)
        return entry[0] if entry is not None else None

    def pending(self) -> list[ApprovalRequest]:
        return [request for request, _ in self._pending.values()]

    def refuse(self, request_id: str) -> None:
        """Deny on nobody's behalf (the chat cannot show the question)."""
        entry = self._pending.get(request_id)
        if entry is not None and not entry[1].done():
            entry[1].set_result(Verdict(approved=False, by=None))

    def decide(self, request_id: str, approved: bool, by: str) -> DecideOutcome:
        entry = self._pending.get(request_id)
        if entry is None or entry[1].done():
            return "unknown"
        request, future = entry
        if request.owner is not None and by != request.owner:
            return "not_owner"
        future.set_result(Verdict(approved=approved, by=by))
        return "approved" if approved else "denied"
