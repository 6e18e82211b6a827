"""Conversation titles: the seed, the one-shot request, and cleaning the answer."""

from __future__ import annotations

import re

from runtime.history import AssistantEntry, Entry, UserEntry
from runtime.prompts import TITLE_PROMPT
from runtime.providers.base import ModelProvider, ModelRequest, TextChunk

MAX_TITLE_CHARS = 60
SEED_CHARS = 200
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"
_TRAILING = ".,;:!?\u2026-\u2013\u2014 "


def title_seed(history: list[Entry]) -> tuple[str, str] | None:
    """The first user message and first assistant text reply, or None if either is missing."""
    user = next((e.text for e in history if isinstance(e, UserEntry) and e.text.strip()), None)
    reply = next(
        (
            e.text
            for e in history
            if isinstance(e, AssistantEntry) and e.text.strip() and not e.interrupted
        ),
        None,
    )
    if user is None or reply is None:
        return None
    return user, reply


def title_request(model: str, seed: tuple[str, str]) -> ModelRequest:
    user, reply = seed
    prompt = f"{TITLE_PROMPT}\n\nUser: {user[:SEED_CHARS]}\nAssistant: {reply[:SEED_CHARS]}"
    return ModelRequest(model=model, system="", messages=(UserEntry(text=prompt),), max_tokens=64)


def clean_title(raw: str) -> str | None:
    """One line, quotes and trailing punctuation stripped, at most 60 characters."""
    line = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
    line = re.sub(r"^(title)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = re.sub(r"^[#*_\s]+|[*_\s]+$", "", line)
    line = line.strip(_QUOTES + " ").rstrip(_TRAILING).strip(_QUOTES + " ")
    line = re.sub(r"\s+", " ", line)
    if len(line) > MAX_TITLE_CHARS:
        cut = line[:MAX_TITLE_CHARS]
        space = cut.rfind(" ")
        line = cut[:space] if space >= MAX_TITLE_CHARS // 2 else cut
        line = line.rstrip(_TRAILING)
    return line or None


async def generate_title(provider: ModelProvider, model: str, seed: tuple[str, str]) -> str | None:
    parts: list[str] = []
    async for event in provider.stream(title_request(model, seed)):
        if isinstance(event, TextChunk):
            parts.append(event.text)
    return clean_title("".join(parts))
