"""What the page shows of a client's chats, read from the runtime: the topic list, the
shown conversation's history, and keeping a scratch chat the user is leaving.

The adapter decides when and to which sockets these frames go; this module only builds
them, so nothing here touches a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from dataclasses import dataclass

from adapters.webchat.frames import Frame, history_frame
from adapters.webchat.inbound import scope_of
from runtime.agent_runtime import AgentRuntime
from runtime.errors import AgentRuntimeError

log = logging.getLogger(__name__)

STOP_WAIT = 5.0  # how long /new waits for a stopped scratch reply to save its text
# Commands after which the page's topic list or header may be out of date.
_REFRESHING_COMMAND = re.compile(r"^/(topic|topics|new|title)(\s|$)", re.IGNORECASE)
# Commands after which the page shows another conversation (a bare /topic only asks).
_SWITCHING_COMMAND = re.compile(r"^/(new(\s|$)|topic\s+\S)", re.IGNORECASE)
_NEW_COMMAND = re.compile(r"^/new(\s|$)", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True, slots=True)
class Shown:
    """The conversation the page shows: its title and, when asked for, its history."""

    title: str
    history: Frame | None


class ChatViews:
    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    async def topics_frame(self, client_id: str, agent: str) -> Frame:
        topics = await self._runtime.topics(agent, scope_of(client_id))
        listing = [{"key": t.key, "title": t.title or "", "active": t.active} for t in topics]
        return {"type": "topics", "agent": agent, "topics": listing}

    async def shown(self, client_id: str, agent: str, *, history: bool, replying: bool) -> Shown:
        """``replying``: the adapter still renders a reply for this client."""
        scope = scope_of(client_id)
        current = self._runtime.router.current(agent, scope)
        if history:
            # Loads the active topic after a restart (or makes the empty scratch chat).
            current = await self._runtime.conversation_for(agent, scope)
        title = (current.title if current is not None else None) or ""
        if not history or current is None:
            return Shown(title=title, history=None)
        frame = history_frame(
            agent=agent,
            topic=current.topic_key,
            title=title,
            turns=await self._runtime.transcript(current),
            running=replying or self.busy(client_id, agent),
        )
        return Shown(title=title, history=frame)

    def busy(self, client_id: str, agent: str) -> bool:
        """Whether a run is going for the client and agent (in any conversation)."""
        scope = scope_of(client_id)
        return any(
            (run.conversation.sender, run.conversation.agent) == (scope, agent)
            for run in self._runtime.active_runs()
        )

    async def before_command(self, client_id: str, agent: str, text: str) -> dict[str, str]:
        """Keep the scratch chat before a command leaves it, and say what the command's
        reply must refresh: the pipeline answers commands later, from its lane, so the
        reply is the moment the command has taken effect."""
        if _SWITCHING_COMMAND.match(text):
            stop = _NEW_COMMAND.match(text) is not None
            saved = await self.keep_scratch(client_id, agent, stop=stop)
            return {"after": "history"} | ({"saved": saved} if saved else {})
        if _REFRESHING_COMMAND.match(text):
            return {"after": "topics"}
        return {}

    async def keep_scratch(self, client_id: str, agent: str, *, stop: bool) -> str | None:
        """Save the client's scratch chat as a topic before leaving it; the topic key,
        or None when there was nothing to keep (or it could not be kept). With ``stop``
        (``/new``, which would cancel it anyway) a reply still running is stopped first
        so its partial text is kept too."""
        scope = scope_of(client_id)
        current = self._runtime.router.current(agent, scope)
        if stop and current is not None and current.is_tmp and current.run is not None:
            run = current.run
            self._runtime.stop(current)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.wait(), STOP_WAIT)
        taken = {t.key for t in await self._runtime.topics(agent, scope)}
        key = base = time.strftime("chat-%Y%m%d-%H%M%S")
        for n in itertools.count(2):
            if key not in taken:
                break
            key = f"{base}-{n}"
        try:
            saved = await self._runtime.save_scratch(agent, scope, key)
        except AgentRuntimeError as exc:
            # A reply still running stays in scratch; the next switch keeps it.
            log.info("kept web chat scratch of %s in memory: %s", client_id, exc)
            return None
        return None if saved is None else key
