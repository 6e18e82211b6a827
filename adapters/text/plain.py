"""Markdown to plain text: markers removed, links as "text (url)", code kept verbatim.
The fallback when a platform rejects the converted markup."""

from __future__ import annotations

from adapters.text.markdown import BareRenderer, convert
from adapters.text.slack_mrkdwn import quote_lines

__all__ = ["to_plain_text"]


class PlainRenderer(BareRenderer):
    def link(self, label: str, url: str, *, bare: bool) -> str:
        return label if bare else f"{label} ({url})"

    def quote(self, inner: str) -> str:
        return quote_lines(inner)


def to_plain_text(md: str) -> str:
    return convert(md, PlainRenderer())
