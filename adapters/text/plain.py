"""Markdown to plain text: markers removed, links as "text (url)", code kept verbatim.
The fallback when a platform rejects the converted markup."""

from __future__ import annotations

from adapters.text.markdown import Kind, convert
from adapters.text.slack_mrkdwn import quote_lines

__all__ = ["to_plain_text"]


class PlainRenderer:
    def text(self, text: str) -> str:
        return text

    def code(self, text: str) -> str:
        return text

    def styled(self, kind: Kind, inner: str) -> str:
        return inner

    def link(self, label: str, url: str, *, bare: bool) -> str:
        return label if bare else f"{label} ({url})"

    def code_block(self, info: str, code: str) -> str:
        return code

    def heading(self, inner: str) -> str:
        return inner

    def quote(self, inner: str) -> str:
        return quote_lines(inner)

    def table(self, grid: str) -> str:
        return grid


def to_plain_text(md: str) -> str:
    return convert(md, PlainRenderer())
