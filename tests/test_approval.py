"""Approval in the chat through the real pipeline: a tool marked ``approve`` pauses the
run, the in-memory platform shows the question with buttons, and a press (by the owner,
by someone else, or none before the timeout) decides what the model is told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from adapters.approval import ApprovalDecision, ApprovalPrompt
from adapters.base import ChatTarget, SentMessage
from gateway.delivery import DeliveryOptions
from gateway.pipeline import Pipeline
from gateway.policy import AdapterPolicy
from runtime.agent_runtime import AgentRuntime
from runtime.history import ToolResultEntry, UserEntry
from runtime.tools import Tool
from tests.fakes.memory_adapter import MemoryAdapter
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.pipeline_helpers import dm, group
from tests.runtime_helpers import make_runtime, wait_for


@dataclass(kw_only=True, slots=True)
class Asked:
    message_id: str
    request_id: str
    text: str
    settled: str | None = None


class ButtonAdapter(MemoryAdapter):
    """The in-memory platform plus approval buttons, as a user would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[Asked] = []

    async def ask_approval(self, target: ChatTarget, prompt: ApprovalPrompt) -> SentMessage:
        sent = await self.send(target, prompt.text, markup=False)
        self.asked.append(
            Asked(message_id=sent.message_id, request_id=prompt.request_id, text=prompt.text)
        )
        return sent

    async def settle_approval(self, message: SentMessage, text: str) -> None:
        for asked in self.asked:
            if asked.message_id == message.message_id:
                asked.settled = text
        await self.edit(message, text, markup=False)

    async def press(self, index: int, approved: bool, user: str = "42") -> str:
        assert isinstance(self.sink, Pipeline)
        decision = ApprovalDecision(
            platform="mem", request_id=self.asked[index].request_id, approved=approved, user_id=user
        )
        return await self.sink.decide(decision)


class PlainAdapter(ButtonAdapter):
    """A platform without buttons: the ApprovalCapable methods are hidden."""

    ask_approval = None  # type: ignore[assignment]
    settle_approval = None  # type: ignore[assignment]


@dataclass(kw_only=True, slots=True)
class Rig:
    pipeline: Pipeline
    runtime: AgentRuntime
    adapter: ButtonAdapter
    provider: ScriptedProvider
    ran: list[dict[str, Any]] = field(default_factory=list)

    def results(self) -> list[ToolResultEntry]:
        last = self.provider.requests[-1]
        return [e for e in last.messages if isinstance(e, ToolResultEntry)]

    async def idle(self) -> None:
        pipeline = self.pipeline
        await wait_for(
            lambda: (
                not (self.runtime.active_runs() or pipeline.renderers or pipeline.approvals.tasks)
            )
        )


@asynccontextmanager
async def rig(*, buttons: bool = True, **spec: Any) -> AsyncIterator[Rig]:
    ran: list[dict[str, Any]] = []

    async def danger(args: dict[str, Any]) -> str:
        ran.append(args)
        return "boom done"

    tool = Tool(name="danger", description="Does something risky.", handler=danger, approve=True)
    provider = ScriptedProvider()
    runtime = make_runtime(provider, tools=[tool], **spec)
    adapter = ButtonAdapter() if buttons else PlainAdapter()
    pipeline = Pipeline(
        runtime,
        {"mem": adapter},
        {"mem": AdapterPolicy(name="mem", edit_interval=0.05, respond="all")},
        default_agent="bot",
        delivery=DeliveryOptions(typing_interval=0.2),
    )
    task = asyncio.create_task(adapter.run(pipeline))
    await adapter.connected()
    try:
        yield Rig(pipeline=pipeline, runtime=runtime, adapter=adapter, provider=provider, ran=ran)
    finally:
        await runtime.shutdown(grace=1)
        await pipeline.drain(grace=1)
        adapter.stop()
        await task


async def test_the_owner_approves_and_the_tool_runs() -> None:
    async with rig() as r:
        r.provider.script(Call("danger", '{"level": 3}'))
        r.provider.script(Text("did it"))
        await r.adapter.deliver(dm("do the risky thing"))
        await wait_for(lambda: bool(r.adapter.asked))
        assert (
            r.adapter.asked[0].text == 'The agent wants to run danger with {"level": 3}. Allow it?'
        )
        assert r.ran == []
        assert await r.adapter.press(0, approved=True) == "Approved."
        await r.idle()
        assert r.ran == [{"level": 3}]
        (result,) = r.results()
        assert (result.content, result.is_error) == ("boom done", False)
        assert r.adapter.asked[0].settled == "danger: approved by 42."
        # The answer lands below the question; the tool status above it is gone.
        assert r.adapter.chat("dm42") == ["danger: approved by 42.", "did it"]
        assert await r.adapter.press(0, approved=False) == (
            "This request is no longer waiting (answered, timed out or stopped)."
        )


async def test_only_the_owner_decides_and_a_denial_is_fed_back() -> None:
    async with rig() as r:
        r.provider.script(Call("danger"))
        r.provider.script(Text("ok, not doing it"))
        await r.adapter.deliver(group("please", user="42", addressed=True))
        await wait_for(lambda: bool(r.adapter.asked))
        answer = await r.adapter.press(0, approved=True, user="7")
        assert answer == "Only the person who started this request can approve or deny it."
        assert r.runtime.active_runs()  # still waiting
        assert await r.adapter.press(0, approved=False, user="42") == "Denied."
        await r.idle()
        assert r.ran == []
        (result,) = r.results()
        assert result.is_error
        assert "did not allow 'danger'" in result.content
        assert r.adapter.asked[0].settled == "danger: denied by 42."


async def test_no_answer_before_the_timeout_is_a_denial() -> None:
    async with rig(approval_timeout=0.2) as r:
        r.provider.script(Call("danger"))
        r.provider.script(Text("timed out"))
        await r.adapter.deliver(dm("go"))
        await wait_for(lambda: bool(r.adapter.asked))
        await r.idle()
        assert r.ran == []
        (result,) = r.results()
        assert "nobody approved 'danger' within 0.2 seconds" in result.content
        assert r.adapter.asked[0].settled == "danger: no answer in time, denied."
        assert r.adapter.chat("dm42") == ["danger: no answer in time, denied.", "timed out"]


async def test_steering_and_stop_work_while_waiting() -> None:
    async with rig() as r:
        r.provider.script(Call("danger"))
        await r.adapter.deliver(dm("go"))
        await wait_for(lambda: bool(r.adapter.asked))
        steer = dm("actually wait")
        await r.adapter.deliver(steer)
        await r.adapter.wait_for(lambda: (steer.message_id, "\N{EYES}") in r.adapter.reactions)
        r.provider.script(Text("answering the steer"))
        await r.adapter.deliver(dm("/stop"))
        await wait_for(lambda: r.adapter.asked[0].settled is not None)
        assert r.adapter.asked[0].settled == "danger: stopped before an answer."
        # The queued message is not lost: it starts the next run once the stop lands.
        await r.adapter.wait_for(lambda: "answering the steer" in r.adapter.chat("dm42"))
        await r.idle()
        assert r.ran == []
        last = r.provider.requests[-1].messages
        assert [e.text for e in last if isinstance(e, UserEntry)][-1] == "actually wait"


async def test_a_chat_without_buttons_is_told_and_the_call_denied() -> None:
    async with rig(buttons=False) as r:
        r.provider.script(Call("danger"))
        r.provider.script(Text("could not ask"))
        await r.adapter.deliver(dm("go"))
        await r.adapter.wait_for(lambda: "could not ask" in r.adapter.chat("dm42"))
        await r.idle()
        assert r.ran == []
        shown = r.adapter.chat("dm42")
        assert any("wants to run danger" in t and "cannot ask; denied" in t for t in shown)
        (result,) = r.results()
        assert "did not allow 'danger'" in result.content


async def test_text_before_the_question_stays_above_it_and_the_answer_goes_below() -> None:
    async with rig() as r:
        r.provider.script(Text("Let me check."), Call("danger"))
        r.provider.script(Text("Checked."))
        await r.adapter.deliver(dm("check it"))
        await wait_for(lambda: bool(r.adapter.asked))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42")[0] == "Let me check.")
        await r.adapter.press(0, approved=True)
        await r.idle()
        assert r.adapter.chat("dm42") == [
            "Let me check.",
            "danger: approved by 42.",
            "Checked.",
        ]
