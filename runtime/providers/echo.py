"""The offline ``echo`` model: streams the user's own words back, for trying the gateway
without any model account. It also answers the runtime's title and compaction prompts
so those features work end to end offline."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence
from typing import assert_never

from runtime.history import AssistantEntry, Entry, SummaryEntry, ToolResultEntry, UserEntry
from runtime.prompts import COMPACT_PROMPT, TITLE_PROMPT
from runtime.providers.base import ModelRequest, ProviderEvent, TextChunk, UsageReport

_WORDS = re.compile(r"\s*\S+\s*")
_TITLE_WORDS = 5
_COMPACT_CHARS = 200


class EchoProvider:
    def __init__(self, name: str = "echo", *, word_delay: float = 0.05) -> None:
        self.name = name
        self.word_delay = word_delay

    def __repr__(self) -> str:
        return f"EchoProvider(name={self.name!r})"

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        reply = reply_for(request.messages)
        for i, word in enumerate(_WORDS.findall(reply)):
            if i and self.word_delay > 0:
                await asyncio.sleep(self.word_delay)
            yield TextChunk(text=word)
        yield UsageReport(
            prompt_tokens=_rough_tokens(_request_chars(request)),
            completion_tokens=_rough_tokens(len(reply)),
        )

    async def aclose(self) -> None:
        return None


def reply_for(messages: Sequence[Entry]) -> str:
    """What the echo model says to a conversation."""
    last_user = next((e for e in reversed(messages) if isinstance(e, UserEntry)), None)
    if last_user is not None and last_user.text.startswith(TITLE_PROMPT):
        return _title(last_user.text[len(TITLE_PROMPT) :])
    if last_user is not None and last_user.text.startswith(COMPACT_PROMPT):
        conversation = last_user.text[len(COMPACT_PROMPT) :].strip()
        if not conversation:
            # The transcript may come as earlier entries rather than inside the prompt.
            conversation = "\n".join(_entry_text(e) for e in messages if e is not last_user)
        return "Earlier we talked about: " + conversation.strip()[:_COMPACT_CHARS]
    last_assistant = max(
        (i for i, e in enumerate(messages) if isinstance(e, AssistantEntry)), default=-1
    )
    texts = [e.text for e in messages[last_assistant + 1 :] if isinstance(e, UserEntry)]
    return "\n".join(texts)


def _title(seed: str) -> str:
    # The seed reads "\n\nUser: <text>\nAssistant: <text>"; the user's words name it.
    _, found, rest = seed.partition("User: ")
    user_text = rest.split("\nAssistant: ", 1)[0] if found else seed
    words = user_text.split()[:_TITLE_WORDS]
    return " ".join(words) or "Echo chat"


def _entry_text(entry: Entry) -> str:
    match entry:
        case UserEntry() | SummaryEntry() | AssistantEntry():
            return entry.text
        case ToolResultEntry():
            return entry.content
        case _:
            assert_never(entry)


def _request_chars(request: ModelRequest) -> int:
    return len(request.system) + sum(len(_entry_text(e)) for e in request.messages)


def _rough_tokens(chars: int) -> int:
    return (chars + 3) // 4
