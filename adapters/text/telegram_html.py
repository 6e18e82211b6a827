"""Markdown to Telegram Bot API HTML (``parse_mode="HTML"``), and the length Telegram
counts: UTF-16 code units of the text after entity parsing (an emoji outside the Basic
Multilingual Plane counts 2)."""

from __future__ import annotations

import html
import re

from adapters.text.markdown import Kind, convert

__all__ = ["telegram_length", "to_telegram_html", "utf16_len"]

_SCHEMES = ("http://", "https://", "mailto:", "tg://")  # Telegram rejects other links
_TAGS: dict[Kind, str] = {"bold": "b", "italic": "i", "strike": "s"}
_LANGUAGE = re.compile(r"[\w#+.-]+")
_TAG = re.compile(r"<[^>]*>")
# One line that opens with a letter and holds none of the characters markdown (or HTML
# escaping) acts on: no construct can start in it, so it renders as itself.
_PLAIN = re.compile(r"[^\W\d_][^\s\\`*_\[\]<>!&#~|\x00]*(?: +[^\s\\`*_\[\]<>!&#~|\x00]+)*")


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


class TelegramRenderer:
    def text(self, text: str) -> str:
        return _escape(text)

    def code(self, text: str) -> str:
        return f"<code>{_escape(text)}</code>"

    def styled(self, kind: Kind, inner: str) -> str:
        tag = _TAGS[kind]
        return f"<{tag}>{inner}</{tag}>"

    def link(self, label: str, url: str, *, bare: bool) -> str:
        if not url.startswith(_SCHEMES):
            return label if bare else f"{label} ({_escape(url)})"
        return f'<a href="{html.escape(url, quote=True)}">{label}</a>'

    def code_block(self, info: str, code: str) -> str:
        words = info.split()
        if not words or not _LANGUAGE.fullmatch(words[0]):
            return f"<pre>{_escape(code)}</pre>"
        return f'<pre><code class="language-{words[0]}">{_escape(code)}</code></pre>'

    def heading(self, inner: str) -> str:
        return f"<b>{inner}</b>"

    def quote(self, inner: str) -> str:
        return f"<blockquote>{inner}</blockquote>"

    def table(self, grid: str) -> str:
        return f"<pre>{_escape(grid)}</pre>"


def to_telegram_html(md: str) -> str:
    """Telegram HTML: always balanced, only tags Telegram supports."""
    if _PLAIN.fullmatch(md):
        return md  # what the parse would give, without it (the costly part of a short reply)
    return convert(md, TelegramRenderer())


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def telegram_length(text: str, *, markup: bool) -> int:
    """How long Telegram finds a message: the shown text (tags removed, entities
    decoded, when sent as HTML) in UTF-16 code units."""
    if markup:
        text = html.unescape(_TAG.sub("", text))
    return utf16_len(text)
