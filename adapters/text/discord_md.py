"""Markdown for Discord, which renders markdown itself: the text goes through as
written, except tables (Discord shows them as raw pipes), drawn as aligned grids."""

from __future__ import annotations

from adapters.text.markdown import tables_as_grids

__all__ = ["to_discord"]


def to_discord(md: str) -> str:
    return tables_as_grids(md)
