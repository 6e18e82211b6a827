"""Markdown for Discord, which renders markdown itself: the text goes through as
written, except tables (Discord shows them as raw pipes), which become aligned
monospace blocks."""

from __future__ import annotations

from adapters.text.markdown import parse
from adapters.text.plain import to_plain_text

__all__ = ["to_discord"]


def to_discord(md: str) -> str:
    if "|" not in md:
        return md  # no table possible: skip the parse
    lines = md.split("\n")
    # Replace from the last table up, so earlier line numbers stay valid.
    for node in reversed(parse(md).children):
        if node.type != "table" or node.map is None:
            continue
        start, end = node.map
        grid = to_plain_text("\n".join(lines[start:end]))
        lines[start:end] = ["```", *grid.split("\n"), "```"]
    return "\n".join(lines)
