"""Approval in the chat, the gateway side: runtime events to buttons, presses to decisions.

``watch`` listens to one run's events (no task until there is something to post): each
``ApprovalRequested`` is posted through the adapter's ``ask_approval`` (through the
chat's budget), and each ``ApprovalResolved`` settles that message with the outcome,
once its question has been posted. A chat whose adapter cannot
show buttons gets the question as text and an immediate denial, so a run never waits
on a question nobody can answer. ``decide`` maps a press to ``AgentRuntime.decide``,
with the speaker id spelled as the pipeline spells it (``platform:user_id``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from adapters.approval import ApprovalCapable, ApprovalDecision, ApprovalPrompt
from adapters.base import Adapter, ChatTarget, SentMessage
from adapters.errors import DeliveryError
from gateway.budget import OutboundBudget
from runtime.agent_runtime import AgentRuntime
from runtime.events import ApprovalRequested, ApprovalResolved, RunEvent
from runtime.run import Run
from runtime.tasks import TaskSet

log = logging.getLogger(__name__)

ANSWERS = {
    "approved": "Approved.",
    "denied": "Denied.",
    "not_owner": "Only the person who started this request can approve or deny it.",
    "unknown": "This request is no longer waiting (answered, timed out or stopped).",
}


def outcome_text(event: ApprovalResolved, tool: str, name: str | None = None) -> str:
    """The question's replacement. ``name``: the decider's display name, if known."""
    if event.outcome == "timeout":
        return f"{tool}: no answer in time, denied."
    if event.outcome == "cancelled":
        return f"{tool}: stopped before an answer."
    verdict = "approved" if event.approved else "denied"
    who = name or (event.by.split(":", 1)[-1] if event.by else "")
    return f"{tool}: {verdict}" + (f" by {who}." if who else ".")


class ApprovalPresenter:
    def __init__(self, runtime: AgentRuntime, budgets: Mapping[str, OutboundBudget]) -> None:
        self._runtime = runtime
        self._budgets = budgets
        self.tasks = TaskSet()
        self._deciders: dict[str, str] = {}  # request id -> display name of who decided

    def watch(self, run: Run, adapter: Adapter, target: ChatTarget) -> None:
        asked: dict[str, tuple[asyncio.Task[SentMessage | None], str]] = {}

        def on_event(event: RunEvent) -> None:
            if isinstance(event, ApprovalRequested):
                request = event.request
                question = self.tasks.spawn(
                    self._ask(adapter, target, request.id, request.prompt()), name="approvals"
                )
                asked[request.id] = (question, request.tool)
            elif isinstance(event, ApprovalResolved) and event.request_id in asked:
                question, tool = asked.pop(event.request_id)
                self.tasks.spawn(
                    self._resolve(adapter, target, question, tool, event), name="approvals"
                )

        run.listen(on_event)

    async def _resolve(
        self,
        adapter: Adapter,
        target: ChatTarget,
        question: asyncio.Task[SentMessage | None],
        tool: str,
        event: ApprovalResolved,
    ) -> None:
        name = self._deciders.pop(event.request_id, None)
        sent = await question
        if sent is None:
            return
        try:
            await self._settle(adapter, sent, outcome_text(event, tool, name))
        except DeliveryError as exc:
            log.warning("approval message in %s failed: %s", target.budget_key, exc)

    async def _ask(
        self, adapter: Adapter, target: ChatTarget, request_id: str, text: str
    ) -> SentMessage | None:
        try:
            return await self._post(adapter, target, request_id, text)
        except DeliveryError as exc:
            log.warning("approval message in %s failed: %s", target.budget_key, exc)
            return None

    async def _post(
        self, adapter: Adapter, target: ChatTarget, request_id: str, text: str
    ) -> SentMessage | None:
        budget = self._budgets[target.platform]
        if not isinstance(adapter, ApprovalCapable):
            await budget.call(
                target.budget_key,
                "send",
                lambda: adapter.send(
                    target, f"{text}\n(This chat cannot ask; denied.)", markup=False
                ),
            )
            self._runtime.approvals.refuse(request_id)
            return None
        prompt = ApprovalPrompt(request_id=request_id, text=text)
        return await budget.call(
            target.budget_key, "send", lambda: adapter.ask_approval(target, prompt)
        )

    async def _settle(self, adapter: Adapter, sent: SentMessage, text: str) -> None:
        assert isinstance(adapter, ApprovalCapable)
        budget = self._budgets[sent.target.platform]
        await budget.call(
            sent.target.budget_key, "edit", lambda: adapter.settle_approval(sent, text)
        )

    async def decide(self, decision: ApprovalDecision) -> str:
        by = f"{decision.platform}:{decision.user_id}"
        outcome = self._runtime.decide(decision.request_id, decision.approved, by)
        if outcome in ("approved", "denied") and decision.user_name:
            self._deciders[decision.request_id] = decision.user_name
        if outcome == "not_owner":
            log.info("approval %s: %s is not the owner", decision.request_id, by)
        return ANSWERS[outcome]

    async def aclose(self) -> None:
        await self.tasks.cancel()
