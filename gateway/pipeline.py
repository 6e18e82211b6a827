"""The inbound pipeline every adapter feeds, and the run/title listeners that answer.

``handle`` (the adapters' sink) drops bots' messages and ungated group chatter, places
the message in its conversation's lane (``Lanes``: per-chat FIFO, synchronous, so
arrival order is kept) and records it in the durable inbox (``Ledger``); it returns
once both are done, so an adapter confirms a message to its platform only after it is
safe. The lane's worker then takes it through dedup, access control with a reply naming
the refused id, agent binding, chat commands, and start-or-steer on the runtime (a
steered message is acknowledged at once with an "eyes" reaction). Replies are not
rendered here: the runtime tells ``on_run_started`` about every run, including a run
started from queued messages, and a ``ReplyRenderer`` task (owned here) streams it to
the chat the run's first message came from. ``on_title`` renames the platform thread.
``recover`` answers what a crash left unanswered in the inbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence

from adapters.approval import ApprovalDecision
from adapters.base import Adapter, ChatTarget, InboundMessage
from adapters.errors import DeliveryError
from gateway.approvals import ApprovalPresenter
from gateway.budget import OutboundBudget
from gateway.cluster import Cluster
from gateway.commands import CommandContext, CommandHandler, parse_command
from gateway.delivery import DeliveryOptions, ReplyRenderer
from gateway.handoff import Handoff
from gateway.intake import Origin, Queued, lane_key
from gateway.lanes import Lanes
from gateway.ledger import Ledger, decode, inbox_id
from gateway.metrics import Metrics
from gateway.policy import AdapterPolicy, BindingRule, refusal, resolve_agent, should_answer
from gateway.upkeep import Upkeep
from runtime.agent_runtime import AgentRuntime
from runtime.conversation import Conversation
from runtime.errors import AgentRuntimeError
from runtime.events import TitleChanged
from runtime.history import Speaker
from runtime.messages import UserMessage
from runtime.run import Run
from runtime.tasks import TaskSet

log = logging.getLogger(__name__)

STEER_ACK = "\N{EYES}"
PERSISTENT_DM_TOPIC = "main"


class Pipeline:
    def __init__(
        self,
        runtime: AgentRuntime,
        adapters: Mapping[str, Adapter],
        policies: Mapping[str, AdapterPolicy],
        *,
        default_agent: str,
        bindings: Sequence[BindingRule] = (),
        metrics: Metrics | None = None,
        delivery: DeliveryOptions | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        self.runtime = runtime
        self.adapters = dict(adapters)
        self.policies = dict(policies)
        self.default_agent = default_agent
        self.bindings = list(bindings)
        self.metrics = metrics or Metrics()
        self.delivery = delivery or DeliveryOptions()
        self.budgets = outbound_budgets(self.policies, self.metrics)
        self.commands = CommandHandler(runtime)
        self.renderers = TaskSet()
        self.approvals = ApprovalPresenter(runtime, self.budgets)
        self.ledger = Ledger(runtime.storage)
        self.lanes: Lanes[Queued] = Lanes(self._process, name="inbox")
        self.handoff = Handoff(
            cluster or Cluster(None), self.ledger, runtime, self.adapters, self._enqueue
        )
        self.upkeep = Upkeep(
            runtime=runtime,
            ledger=self.ledger,
            handoff=self.handoff,
            lanes=self.lanes,
            adapters=self.adapters,
            budgets=self.budgets,
            reply=self.reply,
        )
        self.accepting = True
        runtime.add_run_listener(self.on_run_started)
        runtime.add_title_listener(self.on_title)
        runtime.title_wanted = title_shown

    # -- inbound -------------------------------------------------------------------------

    async def handle(self, message: InboundMessage) -> bool:
        """Queue the message in its lane and record it; the lane's worker answers it.
        False when the message is not for us (a bot's, ungated chatter, shutting down)."""
        received_at = time.monotonic()
        policy = self.policies.get(message.platform)
        if policy is None or message.from_bot or not self.accepting:
            return False
        if not should_answer(policy, message):
            return False
        accepted = asyncio.get_running_loop().create_future()
        self.lanes.put(
            lane_key(message), Queued(message=message, received_at=received_at, accepted=accepted)
        )
        try:
            new = await self.ledger.accept(message)
            accepted.set_result(new)
            if new:
                self.handoff.accepted_here(inbox_id(message))
        except Exception as exc:
            # Answer it anyway: a user is better served than a ledger kept perfect.
            log.error(
                "could not record %s message %s: %s", message.platform, message.message_id, exc
            )
            accepted.set_result(True)
        return True

    async def _process(self, item: Queued) -> None:
        message = item.message or await self._read_back(item.inbox_id)
        if message is None:
            return
        if item.accepted is not None and not await item.accepted:
            self.metrics.duplicates.inc(message.platform)
            log.info("dropped a duplicate %s message %s", message.platform, message.message_id)
            return
        if not await self.handoff.here(lane_key(message), message):
            return  # its owner answers it
        if message.media is not None:
            images, notes = await message.media()
            message = dataclasses.replace(
                message, images=images, attachment_notes=notes, media=None
            )
        if not await self._answer(message, item.received_at):
            await self.ledger.settle(message)  # no run will commit it: settled here

    async def _read_back(self, inbox_key: str) -> InboundMessage | None:
        """A message another replica handed over, if it still waits for an answer."""
        for record in await self.ledger.records([inbox_key]):
            if record.state == "accepted":
                return decode(record)
        return None

    def _enqueue(self, lane: str, message: InboundMessage | None, inbox_key: str) -> None:
        self.lanes.put(
            lane,
            Queued(
                message=message, received_at=time.monotonic(), accepted=None, inbox_id=inbox_key
            ),
        )

    async def _answer(self, message: InboundMessage, received_at: float) -> bool:
        """Refuse, run a command, or start-or-steer. True when a run took the message in
        (its commit marks the message answered)."""
        policy = self.policies[message.platform]
        self.metrics.messages_in.inc(message.platform)
        refused = refusal(policy, message)
        if refused is not None:
            self.metrics.refused.inc(message.platform)
            log.info("refused %s user %s (not on the allowlist)", policy.name, message.user_id)
            await self.reply(message.target, refused)
            return False
        agent = message.agent if message.agent in self.runtime.agents else None
        agent = agent or resolve_agent(self.bindings, message, policy, self.default_agent)
        command = parse_command(message.text)
        if command is not None and not message.edited:
            ctx = CommandContext(
                agent=agent,
                message=message,
                policy=policy,
                rename=lambda _conversation, title: self._rename(message.target, title),
            )
            await self.reply(message.target, await self.commands.handle(command, ctx))
            return False
        return await self._submit(agent, message, policy, received_at)

    async def _submit(
        self, agent: str, message: InboundMessage, policy: AdapterPolicy, received_at: float
    ) -> bool:
        """Start or steer; False when the message got no run (answered some other way)."""
        topic = message.topic
        if (
            topic is None
            and message.is_direct
            and policy.dm_conversation == "persistent"
            and await self.runtime.router.active_topic(agent, message.scope) is None
        ):
            topic = PERSISTENT_DM_TOPIC
        if message.edited:
            current = self.runtime.router.current(agent, message.scope)
            if current is None or current.run is None:
                log.info("ignored an edit of %s outside a run", message.message_id)
                return False
        user_message = UserMessage(
            text=compose_text(message),
            speaker=Speaker(name=message.user_name, id=f"{message.platform}:{message.user_id}"),
            images=message.images,
            message_id=message.message_id,
            origin=Origin(message=message, received_at=received_at),
            inbox_id=inbox_id(message) if self.ledger.durable else None,
        )
        try:
            sub = await self.runtime.submit(agent, message.scope, user_message, topic=topic)
        except AgentRuntimeError as exc:
            await self.reply(message.target, str(exc))
            return False
        if sub.outcome == "steered":
            self.metrics.steers.inc(message.platform)
            await self._acknowledge(message)
        return True

    # -- recovery ------------------------------------------------------------------------

    async def _acknowledge(self, message: InboundMessage) -> None:
        adapter = self.adapters[message.platform]

        async def react() -> None:
            try:
                await adapter.react(message.target, message.message_id, STEER_ACK)
            except DeliveryError as exc:  # reactions not allowed there: skip quietly
                log.debug("could not acknowledge %s: %s", message.message_id, exc)

        await self.budgets[message.platform].call(message.target.budget_key, "react", react)

    async def reply(self, target: ChatTarget, text: str) -> None:
        adapter = self.adapters[target.platform]
        try:
            await self.budgets[target.platform].call(
                target.budget_key, "send", lambda: adapter.send(target, text, markup=False)
            )
        except DeliveryError as exc:
            log.warning("could not reply in %s: %s", target.budget_key, exc)

    # -- runs and titles -------------------------------------------------------------------

    def on_run_started(self, run: Run) -> None:
        origin = run.origin
        if not isinstance(origin, Origin):
            return
        platform = origin.message.platform
        self.metrics.runs.inc(platform)
        renderer = ReplyRenderer(
            run,
            self.adapters[platform],
            origin.message.target,
            self.budgets[platform],
            self.metrics,
            received_at=origin.received_at,
            options=self.delivery,
        )
        self.renderers.spawn(self._render(renderer), name=f"render-{run.id[:8]}")
        self.approvals.watch(run, self.adapters[platform], origin.message.target)

    async def decide(self, decision: ApprovalDecision) -> str:
        """An approval button press (adapters reach it as a ``DecisionSink``)."""
        return await self.approvals.decide(decision)

    async def _render(self, renderer: ReplyRenderer) -> None:
        try:
            await renderer.render()
        except Exception:
            log.exception("rendering a reply failed")

    def on_title(self, conv: Conversation, event: TitleChanged) -> None:
        if event.source != "generated" or conv.is_tmp or not isinstance(event.origin, Origin):
            return  # a user's /title renames from the command handler
        target = event.origin.message.target
        self.renderers.spawn(self._rename(target, event.title), name="rename")

    async def _rename(self, target: ChatTarget, title: str) -> None:
        adapter = self.adapters[target.platform]

        async def rename() -> None:
            try:
                await adapter.rename(target, title)
            except DeliveryError as exc:
                log.info("could not rename %s: %s", target.budget_key, exc)

        await self.budgets[target.platform].call(target.budget_key, "rename", rename)

    # -- lifecycle -----------------------------------------------------------------------

    async def stop_intake(self, timeout: float) -> None:
        """Adapters stop taking events, then what was accepted reaches the runtime (a
        message still in a lane then stays unanswered in the inbox for the restart)."""

        async def stop(adapter: Adapter) -> None:
            try:
                await asyncio.wait_for(adapter.stop_intake(), timeout)
            except Exception as exc:
                log.warning("%s adapter did not stop its intake cleanly: %s", adapter.name, exc)

        await asyncio.gather(*(stop(a) for a in self.adapters.values()))
        self.accepting = False
        if not await self.lanes.join(timeout):
            log.warning("%d message(s) left in the inbox for the next start", self.lanes.pending())
        await self.lanes.cancel()

    async def drain(self, grace: float) -> None:
        """Wait for replies in flight to land (bounded), then cancel what is left."""
        self.accepting = False
        await self.renderers.wait(grace)
        await self.renderers.cancel()


SCRATCH_TITLE_SURFACES = frozenset({"webchat"})
"""Where a scratch conversation's title is seen (the web chat's header). Elsewhere a
scratch conversation is a plain DM with nothing to name, and its title request would
be a wasted model call; topics and threads are always titled."""


def title_shown(conv: Conversation, origin: object | None) -> bool:
    if not conv.is_tmp:
        return True
    return isinstance(origin, Origin) and origin.message.platform in SCRATCH_TITLE_SURFACES


def outbound_budgets(
    policies: Mapping[str, AdapterPolicy], metrics: Metrics
) -> dict[str, OutboundBudget]:
    """One outbound budget per platform, paced by its policy's edit interval."""
    return {
        name: OutboundBudget(metrics, platform=name, edit_interval=policy.edit_interval)
        for name, policy in policies.items()
    }


def compose_text(message: InboundMessage) -> str:
    """The message text plus a note per attachment the agent cannot see: nothing is
    silently dropped."""
    notes = [f"[attachment: {note}]" for note in message.attachment_notes]
    return "\n".join([message.text, *notes]) if notes else message.text
