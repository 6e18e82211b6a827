"""What a chat page shows of a conversation: its visible turns, read-only.

The model context (``Conversation.history``) is not the transcript: after a compaction
it starts with a summary, and it holds tool calls and results no person typed. The
transcript of a persisted conversation therefore comes from its stored log (which keeps
every entry, compaction markers aside) plus what the run in flight has not committed
yet; a scratch conversation has only its in-memory history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, assert_never

from runtime.history import (
    AssistantEntry,
    CompactMarker,
    StoredEntry,
    SummaryEntry,
    ToolResultEntry,
    UserEntry,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Turn:
    """One visible message. ``summary`` stands for turns a scratch conversation's
    compaction replaced (only persisted conversations keep the originals)."""

    role: Literal["user", "assistant", "summary"]
    text: str
    speaker: str | None = None
    interrupted: bool = False


def visible_turns(entries: Iterable[StoredEntry]) -> list[Turn]:
    """User text and assistant text, in order; tool traffic and markers are left out."""
    turns: list[Turn] = []
    for entry in entries:
        match entry:
            case UserEntry():
                name = entry.speaker.name if entry.speaker is not None else None
                turns.append(Turn(role="user", text=entry.text, speaker=name))
            case AssistantEntry():
                # A tool-calling step with no text is an internal; a stopped empty reply
                # is not, since the user saw it stop.
                if entry.text or entry.interrupted:
                    turns.append(
                        Turn(role="assistant", text=entry.text, interrupted=entry.interrupted)
                    )
            case SummaryEntry():
                turns.append(Turn(role="summary", text=entry.text))
            case ToolResultEntry() | CompactMarker():
                pass
            case _:
                assert_never(entry)
    return turns


def join_log(stored: Sequence[StoredEntry], pending: Sequence[StoredEntry]) -> list[StoredEntry]:
    """The stored log followed by the uncommitted entries. A commit that lands while the
    log is being read leaves its entries in both for a moment; the overlap is dropped."""
    for overlap in range(min(len(stored), len(pending)), 0, -1):
        if list(stored[-overlap:]) == list(pending[:overlap]):
            return [*stored, *pending[overlap:]]
    return [*stored, *pending]
