"""Markdown to the HTML the web chat page inserts into a reply bubble.

Rendered here, not in the page, so one real CommonMark parser (markdown-it-py) handles
headings, lists, quotes and tables instead of a hand-written one in JavaScript. Safety
does not rest on the page: raw HTML in the text is escaped (``html: False``),
markdown-it's ``validateLink`` drops ``javascript:``/``vbscript:``/``file:``/``data:``
links, and images are off (the page's CSP only allows ``data:`` images, so a remote
image would only show as broken). The page's CSP still forbids inline script as a
second line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

_md = (
    MarkdownIt("commonmark", {"html": False, "breaks": True})
    .enable(["table", "strikethrough"])
    .disable(["image"])
)


def _link_open(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # A link must not replace the chat (its websocket and scroll position) in the tab.
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer")
    rendered: str = self.renderToken(tokens, idx, options, env)
    return rendered


_md.add_render_rule("link_open", _link_open)


def render_markdown(text: str) -> str:
    """Safe HTML for ``text``; every piece of the input is escaped or dropped."""
    html: str = _md.render(text)
    return html
