"""Compaction: replace older turns with a model-written summary.

Triggered before a model call when the provider-reported prompt size of the previous
call passed the agent's ``compact_threshold``. The last ``compact_retained_turns`` turns
stay verbatim. The summary is stored as an archive plus a compact marker so a resume
rebuilds ``[summary, retained turns...]``. Thrash guard: if compaction fails, or the very
next call still reports a prompt over the threshold, automatic compaction is switched
off (for the rest of the run after a failure, for the conversation when compacting did
not help, until a manual ``/compact``) and the conversation is told so once.
"""

from __future__ import annotations

import logging

from runtime.agents import Agent
from runtime.conversation import Conversation
from runtime.errors import ProviderError
from runtime.events import Compacted
from runtime.history import (
    AssistantEntry,
    CompactMarker,
    Entry,
    SummaryEntry,
    ToolResultEntry,
    UserEntry,
    render_assistant_text,
    render_user_text,
)
from runtime.prompts import COMPACT_PROMPT, SUMMARY_PREFIX
from runtime.providers.base import ModelRequest, TextChunk
from runtime.run import Run

log = logging.getLogger(__name__)


def split_turns(history: list[Entry], retained_turns: int) -> int:
    """Index where the retained turns begin; 0 when there is nothing older to fold.
    A turn starts at a user entry that was not steered into a running turn; at least one
    turn (the current one) is always retained."""
    starts = [i for i, e in enumerate(history) if isinstance(e, UserEntry) and not e.steered]
    keep = max(1, retained_turns)
    if len(starts) <= keep:
        return 0
    return starts[-keep]


def transcript(entries: list[Entry]) -> str:
    lines: list[str] = []
    for entry in entries:
        match entry:
            case UserEntry():
                lines.append(f"User: {render_user_text(entry)}")
            case AssistantEntry():
                text = render_assistant_text(entry)
                calls = ", ".join(c.name for c in entry.tool_calls)
                lines.append(f"Assistant: {text}" + (f" (called {calls})" if calls else ""))
            case ToolResultEntry():
                lines.append(f"Tool {entry.name}: {entry.content[:500]}")
            case SummaryEntry():
                lines.append(f"{SUMMARY_PREFIX}{entry.text}")
    return "\n".join(lines)


async def summarise(agent: Agent, entries: list[Entry]) -> str:
    """One request, no tools: the older turns as a transcript, then the instruction."""
    request = ModelRequest(
        model=agent.spec.model,
        system="",
        messages=(UserEntry(text=f"{COMPACT_PROMPT}\n\n{transcript(entries)}"),),
    )
    parts: list[str] = []
    async for event in agent.provider.stream(request):
        if isinstance(event, TextChunk):
            parts.append(event.text)
    return "".join(parts).strip()


async def compact_now(agent: Agent, conv: Conversation) -> Compacted:
    """Fold all but the retained turns into a summary; history is untouched on failure."""
    cut = split_turns(conv.history, agent.spec.compact_retained_turns)
    if cut == 0:
        return Compacted(status="failed", detail="There is nothing old enough to compact yet.")
    older, retained = conv.history[:cut], conv.history[cut:]
    try:
        summary = await summarise(agent, older)
    except ProviderError as exc:
        log.warning("compaction failed for conversation %s: %s", conv.id, exc)
        return Compacted(status="failed", detail=f"Compaction failed: {exc}")
    if not summary:
        return Compacted(status="failed", detail="Compaction failed: the model returned nothing.")
    marker = CompactMarker(summary=summary, retained=len(retained), archived=tuple(older))
    conv.replace_history([SummaryEntry(text=summary), *retained], marker)
    return Compacted(
        status="compacted", summarised_entries=len(older), retained_entries=len(retained)
    )


async def maybe_compact(run: Run, agent: Agent, conv: Conversation) -> None:
    threshold = agent.spec.compact_threshold
    if threshold is None or not conv.auto_compact or conv.last_prompt_tokens <= threshold:
        return
    if conv.compact_failed_run == run.id:
        return
    result = await compact_now(agent, conv)
    if result.status == "compacted":
        conv.just_compacted = True
        conv.last_prompt_tokens = 0
        run.emit(result)
        return
    conv.compact_failed_run = run.id
    _notice_once(run, conv, result)


def note_prompt_size(run: Run, agent: Agent, conv: Conversation, prompt_tokens: int) -> None:
    """Called with each usage report: the call right after a compaction tells whether it
    helped."""
    threshold = agent.spec.compact_threshold
    if not conv.just_compacted or threshold is None:
        return
    conv.just_compacted = False
    if prompt_tokens > threshold:
        conv.auto_compact = False
        _notice_once(
            run,
            conv,
            Compacted(
                status="ineffective",
                detail="The conversation is still over the compaction threshold after "
                "compacting; going on without compacting.",
            ),
        )


def _notice_once(run: Run, conv: Conversation, result: Compacted) -> None:
    if not conv.compaction_noticed:
        conv.compaction_noticed = True
        run.emit(result)
