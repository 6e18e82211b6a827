"""The inbound pipeline every adapter feeds, and the run/title listeners that answer.

``handle`` takes one ``InboundMessage`` through: bots dropped, group gating, dedup by
platform message id (persisted), access control with a reply naming the refused id,
agent binding, chat commands, then start-or-steer on the runtime (a steered message is
acknowledged at once with an "eyes" reaction). Replies are not rendered here: the
runtime tells ``on_run_started`` about every run, including a run started from queued
messages, and a ``ReplyRenderer`` task (owned here) streams it to the chat the run's
first message came from. ``on_title`` renames the platform thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from adapters.base import Adapter, ChatTarget, InboundMessage
from adapters.errors import DeliveryError
from gateway.budget import OutboundBudget
from gateway.commands import CommandContext, CommandHandler, parse_command
from gateway.delivery import DeliveryOptions, ReplyRenderer
from gateway.metrics import Metrics
from gateway.policy import AdapterPolicy, BindingRule, refusal, resolve_agent, should_answer
from runtime.agent_runtime import AgentRuntime
from runtime.conversation import Conversation
from runtime.errors import AgentRuntimeError
from runtime.events import TitleChanged
from runtime.history import Speaker
from runtime.messages import UserMessage
from runtime.run import Run

log = logging.getLogger(__name__)

STEER_ACK = "\N{EYES}"
PERSISTENT_DM_TOPIC = "main"


@dataclass(frozen=True, kw_only=True, slots=True)
class Origin:
    """What the runtime carries for us on a run: the message and when it arrived."""

    message: InboundMessage
    received_at: float


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
    ) -> None:
        self.runtime = runtime
        self.adapters = dict(adapters)
        self.policies = dict(policies)
        self.default_agent = default_agent
        self.bindings = list(bindings)
        self.metrics = metrics or Metrics()
        self.delivery = delivery or DeliveryOptions()
        self.budgets = {
            name: OutboundBudget(
                self.metrics, platform=name, edit_interval=self.policies[name].edit_interval
            )
            for name in self.adapters
        }
        self.commands = CommandHandler(runtime)
        self.renderers: set[asyncio.Task[None]] = set()
        self._targets: dict[str, ChatTarget] = {}
        self._seen: set[tuple[str, str]] = set()  # dedup when there is no storage
        self.accepting = True
        runtime.add_run_listener(self.on_run_started)
        runtime.add_title_listener(self.on_title)

    # -- inbound -------------------------------------------------------------------------

    async def handle(self, message: InboundMessage) -> None:
        received_at = time.monotonic()
        policy = self.policies.get(message.platform)
        if policy is None or message.from_bot or not self.accepting:
            return
        if not should_answer(policy, message):
            return
        if not await self._first_delivery(message):
            self.metrics.duplicates.inc(message.platform)
            log.info("dropped a duplicate %s message %s", message.platform, message.message_id)
            return
        self.metrics.messages_in.inc(message.platform)
        refused = refusal(policy, message)
        if refused is not None:
            self.metrics.refused.inc(message.platform)
            log.info("refused %s user %s (not on the allowlist)", policy.name, message.user_id)
            await self.reply(message.target, refused)
            return
        agent = message.agent if message.agent in self.runtime.agents else None
        agent = agent or resolve_agent(self.bindings, message, policy, self.default_agent)
        command = parse_command(message.text)
        if command is not None and not message.edited:
            ctx = CommandContext(agent=agent, message=message, policy=policy, rename=self._rename)
            await self.reply(message.target, await self.commands.handle(command, ctx))
            return
        await self._submit(agent, message, policy, received_at)

    async def _submit(
        self, agent: str, message: InboundMessage, policy: AdapterPolicy, received_at: float
    ) -> None:
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
                return
        user_message = UserMessage(
            text=compose_text(message),
            speaker=Speaker(name=message.user_name, id=f"{message.platform}:{message.user_id}"),
            images=message.images,
            message_id=message.message_id,
            origin=Origin(message=message, received_at=received_at),
        )
        try:
            sub = await self.runtime.submit(agent, message.scope, user_message, topic=topic)
        except AgentRuntimeError as exc:
            await self.reply(message.target, str(exc))
            return
        self._targets[sub.conversation.id] = message.target
        if sub.outcome == "steered":
            self.metrics.steers.inc(message.platform)
            await self._acknowledge(message)

    async def _first_delivery(self, message: InboundMessage) -> bool:
        storage = self.runtime.storage
        if storage is not None:
            return await storage.mark_processed(message.platform, message.message_id)
        key = (message.platform, message.message_id)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

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
        task = asyncio.create_task(self._render(renderer), name=f"render-{run.id[:8]}")
        self.renderers.add(task)
        task.add_done_callback(self.renderers.discard)

    async def _render(self, renderer: ReplyRenderer) -> None:
        try:
            await renderer.render()
        except Exception:
            log.exception("rendering a reply failed")

    def on_title(self, conv: Conversation, event: TitleChanged) -> None:
        if event.source != "generated" or conv.is_tmp:
            return  # a user's /title renames from the command handler
        task = asyncio.create_task(self._rename(conv.id, event.title), name="rename")
        self.renderers.add(task)
        task.add_done_callback(self.renderers.discard)

    async def _rename(self, conversation_id: str, title: str) -> None:
        target = self._targets.get(conversation_id)
        if target is None:
            return
        adapter = self.adapters[target.platform]

        async def rename() -> None:
            try:
                await adapter.rename(target, title)
            except DeliveryError as exc:
                log.info("could not rename %s: %s", target.budget_key, exc)

        await self.budgets[target.platform].call(target.budget_key, "rename", rename)

    async def drain(self, grace: float) -> None:
        """Wait for replies in flight to land (bounded), then cancel what is left."""
        self.accepting = False
        if self.renderers:
            await asyncio.wait(list(self.renderers), timeout=grace)
        for task in list(self.renderers):
            task.cancel()
        await asyncio.gather(*self.renderers, return_exceptions=True)


def compose_text(message: InboundMessage) -> str:
    """The message text plus a note per attachment the agent cannot see: nothing is
    silently dropped."""
    notes = [f"[attachment: {note}]" for note in message.attachment_notes]
    return "\n".join([message.text, *notes]) if notes else message.text
