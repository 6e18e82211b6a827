"""Fixed prompts the runtime sends on its own behalf (titles, compaction)."""

from __future__ import annotations

TITLE_PROMPT = (
    "Summarize this conversation in 3-6 words as a short title. "
    "Return ONLY the title, nothing else."
)

COMPACT_PROMPT = (
    "Summarize the conversation so far for your own later use: the facts, decisions, "
    "open questions and anything the user asked you to remember. Be concise; write "
    "plain prose. Return ONLY the summary."
)

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
