"""The runtime facade adapters drive: submit messages, manage topics, listen for runs.

How the pieces interact. ``submit`` routes a message to its conversation (``Router``);
if that conversation has a run, the message joins its steering FIFO, else a run starts:
a task owned here, holding the conversation's lock, driving an ``AgentLoop`` and then
committing what the run wrote in one storage transaction. The run's ``Done`` is emitted
after that commit; in the same synchronous step the conversation is marked idle and, if
messages are still queued, the next run starts at once, so a message can never fall
between "run ending" and "run idle". Run listeners hear about every run, including those
started from the queue; title listeners hear about titles, which a background task
generates after a run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from runtime.agents import Agent, AgentRegistry
from runtime.approval import ApprovalBroker, DecideOutcome
from runtime.compaction import compact_now
from runtime.conversation import Conversation
from runtime.errors import AgentRuntimeError, ConversationBusyError, StorageError
from runtime.events import Compacted, Done, TitleChanged
from runtime.loop import AgentLoop
from runtime.messages import UserMessage
from runtime.router import Router
from runtime.run import Run
from runtime.status import (
    ConversationStatus,
    ScratchUsage,
    TopicInfo,
    conversation_status,
    list_topics,
    read_transcript,
)
from runtime.storage.base import EventRecord, RunCommit, Storage
from runtime.tasks import TaskSet
from runtime.titles import clean_title, generate_title, title_seed
from runtime.transcript import Turn

log = logging.getLogger(__name__)

TMP_IDLE_TTL = 6 * 3600.0
"""Seconds a scratch conversation lives in memory after its last message."""
TOPIC_IDLE_TTL = 3600.0
"""Seconds an idle topic stays in memory; it reloads from storage when needed."""

RunListener = Callable[[Run], None]
TitleWanted = Callable[[Conversation, object | None], bool]
"""Whether anything shows this conversation's title (given the origin of its last run):
a title nobody sees is a wasted model request."""
TitleListener = Callable[[Conversation, TitleChanged], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class Submission:
    outcome: Literal["started", "steered"]
    conversation: Conversation
    run: Run
    position: int = 0  # place in the steering queue when steered


class AgentRuntime:
    def __init__(self, agents: AgentRegistry, storage: Storage | None = None) -> None:
        self.agents = agents
        self.storage = storage
        self.router = Router(storage)
        self._runs: set[Run] = set()
        self._background = TaskSet()
        self._run_listeners: list[RunListener] = []
        self._title_listeners: list[TitleListener] = []
        self._accepting = True
        self.approvals = ApprovalBroker()
        self.title_wanted: TitleWanted = lambda conv, origin: True
        self._scratch_usage = ScratchUsage(self.router)
        self.tmp_idle_ttl = TMP_IDLE_TTL
        self.topic_idle_ttl = TOPIC_IDLE_TTL

    # -- listeners ---------------------------------------------------------------------

    def add_run_listener(self, listener: RunListener) -> None:
        self._run_listeners.append(listener)

    def add_title_listener(self, listener: TitleListener) -> None:
        self._title_listeners.append(listener)

    # -- messages ------------------------------------------------------------------------

    async def conversation_for(
        self, agent: str, sender: str, *, topic: str | None = None
    ) -> Conversation:
        self.agents.get(agent)
        if topic is not None:
            return await self.router.switch_topic(agent, sender, topic)
        return await self.router.get_or_create(agent, sender)

    async def submit(
        self, agent: str, sender: str, message: UserMessage, *, topic: str | None = None
    ) -> Submission:
        """Start a run, or steer into the running one. Returns at once either way."""
        if not self._accepting:
            raise AgentRuntimeError("The runtime is shutting down and takes no new messages.")
        agent_obj = self.agents.get(agent)
        conv = await self.conversation_for(agent, sender, topic=topic)
        # No await between this check and the queue/start: that is the steering guarantee.
        if conv.run is not None:
            position = conv.steering.put(message)
            return Submission(outcome="steered", conversation=conv, run=conv.run, position=position)
        run = self._start_run(conv, agent_obj, message)
        return Submission(outcome="started", conversation=conv, run=run)

    def active_runs(self) -> list[Run]:
        return list(self._runs)

    def _start_run(self, conv: Conversation, agent: Agent, trigger: UserMessage | None) -> Run:
        origin = trigger.origin if trigger is not None else None
        if trigger is None and conv.has_queued:
            origin = conv.steering.peek_origin()
        run = Run(conv, origin=origin)
        if trigger is not None:
            conv.take_in(trigger, steered=False)
        conv.run = run
        self._runs.add(run)
        run.task = asyncio.create_task(self._drive(run, agent), name=f"run-{run.id[:8]}")
        for listener in self._run_listeners:
            listener(run)
        return run

    async def _drive(self, run: Run, agent: Agent) -> None:
        conv = run.conversation
        task = asyncio.current_task()
        run.phase = "waiting"
        try:
            if run.cancel_requested:
                raise asyncio.CancelledError
            async with conv.lock:
                run.phase = "looping"
                done = await AgentLoop(run, agent, conv, approvals=self.approvals).execute()
        except asyncio.CancelledError:
            done = Done(reason="cancelled")  # cancelled while waiting for the lock
        except Exception:
            log.exception("run %s of agent %s crashed", run.id, agent.name)
            done = Done(reason="error", error="The agent failed unexpectedly.")
        run.phase = "finishing"
        external_cancel = task is not None and task.cancelling() > int(run.cancel_requested)
        if not conv.is_tmp:
            conv.record_event(
                EventRecord(
                    kind="run",
                    data_json=json.dumps(
                        {
                            "run_id": run.id,
                            "stop_reason": done.stop_reason,
                            "started": run.started_at,
                        }
                    ),
                    at=time.time(),
                )
            )
        await self._persist(conv)
        run.emit(done)
        run.phase = "finished"
        self._after_run(run, agent)
        if external_cancel:
            raise asyncio.CancelledError

    def _after_run(self, run: Run, agent: Agent) -> None:
        conv = run.conversation
        conv.run = None
        self._runs.discard(run)
        if conv.is_tmp:
            self._scratch_usage.count(run)
        if conv.has_queued and self._accepting and self.router.is_routed(conv):
            self._start_run(conv, agent, None)
        self._maybe_title(conv, agent, run.origin)

    async def _persist(self, conv: Conversation) -> None:
        """Write what the run produced, settling its inbox ids in the same transaction
        (a tmp conversation writes no entries, so only its inbox ids are settled)."""
        if self.storage is None:
            conv.answered.clear()
            return
        commit = conv.take_commit()
        try:
            if commit is not None:
                await self.storage.commit_run(commit)
            elif conv.answered:
                answered = list(conv.answered)
                await self.storage.settle_inbound(answered, "answered")
                del conv.answered[: len(answered)]
        except StorageError:
            # Kept pending: the next boundary writes it again, nothing is lost.
            log.exception("could not save conversation %s; will retry", conv.id)
            return
        if commit is not None:
            conv.commit_succeeded(commit)

    # -- titles --------------------------------------------------------------------------

    def _maybe_title(self, conv: Conversation, agent: Agent, origin: object | None) -> None:
        if conv.title is not None or conv.title_task is not None:
            return
        if not self.title_wanted(conv, origin):
            return
        seed = title_seed(conv.history)
        if seed is None:
            return
        conv.title_task = self._background.spawn(
            self._generate_title(conv, agent, seed, origin), name="title"
        )

    async def _generate_title(
        self, conv: Conversation, agent: Agent, seed: tuple[str, str], origin: object | None
    ) -> None:
        try:
            model = agent.spec.title_model or agent.spec.model
            title = await generate_title(agent.provider, model, seed)
        except Exception as exc:  # any failure: retried after the next run
            log.debug("title generation failed for %s: %s", conv.id, exc)
            return
        finally:
            conv.title_task = None
        if title is None or conv.title is not None:
            return
        await self._apply_title(conv, title, "generated", origin)

    async def set_title(self, conversation_id: str, title: str) -> str:
        """A user's title; it always wins over a generated one. Returns the cleaned title."""
        conv = self.router.get(conversation_id)
        cleaned = clean_title(title)
        if cleaned is None:
            raise AgentRuntimeError("A title needs at least one visible character.")
        await self._apply_title(conv, cleaned, "user")
        return cleaned

    async def _apply_title(
        self,
        conv: Conversation,
        title: str,
        source: Literal["generated", "user"],
        origin: object | None = None,
    ) -> None:
        conv.title = title
        if not conv.is_tmp and self.storage is not None:
            try:
                await self.storage.commit_run(RunCommit(session=conv.session_record()))
            except StorageError:
                log.exception("could not save the title of conversation %s", conv.id)
        event = TitleChanged(conversation_id=conv.id, title=title, source=source, origin=origin)
        for listener in self._title_listeners:
            listener(conv, event)

    # -- topics and control --------------------------------------------------------------

    async def switch_topic(self, agent: str, sender: str, key: str) -> Conversation:
        self.agents.get(agent)
        return await self.router.switch_topic(agent, sender, key)

    async def new(self, agent: str, sender: str) -> None:
        dropped = await self.router.new(agent, sender)
        if dropped is not None and dropped.run is not None:
            dropped.run.cancel()

    async def save_scratch(self, agent: str, sender: str, key: str) -> Conversation | None:
        """Keep the sender's scratch conversation as the saved topic ``key`` (history and
        title copied, not active) and empty the scratch slot, so leaving a scratch chat
        does not lose it. None when there is nothing to keep or no storage to keep it in."""
        self.agents.get(agent)
        scratch = next(
            (
                c
                for c in self.router.conversations()
                if c.is_tmp and (c.agent, c.sender) == (agent, sender)
            ),
            None,
        )
        if scratch is None or not scratch.history or self.storage is None:
            return None
        if scratch.run is not None:
            raise ConversationBusyError("The agent is still replying; wait for it or /stop first.")
        if await self.storage.find_session(agent, sender, key) is not None:
            raise AgentRuntimeError(f"A topic named {key!r} already exists.")
        active = self.router.active_key(agent, sender)
        topic = await self.router.switch_topic(agent, sender, key)
        for entry in scratch.history:
            topic.append(entry)
        topic.title = scratch.title
        await self._persist(topic)
        await self.router.new(agent, sender)  # drops the scratch, deactivates ``key``
        if active is not None:
            await self.router.switch_topic(agent, sender, active)
        return topic

    async def close(self, conversation_id: str) -> None:
        conv = self.router.get(conversation_id)
        self.router.remove(conv)
        run = conv.run
        if run is not None:
            run.cancel()
            await run.wait()
        if conv.has_queued:
            log.info("closed conversation %s with %d queued messages", conv.id, len(conv.steering))

    def decide(self, request_id: str, approved: bool, by: str) -> DecideOutcome:
        """A button press on an approval request; only the run's owner decides."""
        return self.approvals.decide(request_id, approved, by)

    def stop(self, conv: Conversation) -> bool:
        """Cancel the conversation's run (``/stop``); False when nothing was running."""
        return conv.run is not None and conv.run.cancel()

    async def compact(self, conversation_id: str) -> Compacted:
        conv = self.router.get(conversation_id)
        if conv.run is not None:
            raise ConversationBusyError("The agent is still replying; wait for it or /stop first.")
        agent = self.agents.get(conv.agent)
        async with conv.lock:
            result = await compact_now(agent, conv)
            if result.status == "compacted":
                conv.auto_compact = True
                conv.compaction_noticed = False
                await self._persist(conv)
        return result

    async def topics(self, agent: str, sender: str) -> list[TopicInfo]:
        return await list_topics(self.router, self.storage, agent, sender)

    async def transcript(self, conv: Conversation) -> list[Turn]:
        """The conversation's visible turns (user and assistant text), read-only."""
        return await read_transcript(self.storage, conv)

    async def status(self, conv: Conversation) -> ConversationStatus:
        model = self.agents.get(conv.agent).spec.model
        return await conversation_status(self.storage, self._scratch_usage, conv, model)

    def evict_idle(self) -> int:
        """Forget idle conversations (see ``Router.evict_idle``); returns the count."""
        return self.router.evict_idle(
            now=time.time(), tmp_ttl=self.tmp_idle_ttl, topic_ttl=self.topic_idle_ttl
        )

    # -- shutdown ------------------------------------------------------------------------

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop taking messages, let runs finish for ``grace`` seconds, then cancel the
        rest (each persists what it has). Queued messages that got no run stay unanswered
        in the durable inbox, which answers them after the restart; without an inbox id
        (no ledger) they are saved as user entries so nothing is lost."""
        self._accepting = False
        runs = [r for r in self._runs if r.task is not None]
        if runs:
            _, late = await asyncio.wait([r.task for r in runs if r.task], timeout=grace)
            for run in list(self._runs):
                run.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        for conv in self.router.conversations():
            if conv.has_queued and not conv.is_tmp:
                for message in conv.steering.drain():
                    if message.inbox_id is None:
                        conv.append(message.to_entry(steered=False))
                await self._persist(conv)
        await self._background.cancel()
