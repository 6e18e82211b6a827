"""Markdown to Slack mrkdwn, with ``&``, ``<`` and ``>`` escaped outside link control
sequences."""

from __future__ import annotations

from adapters.text.markdown import Kind, convert

__all__ = ["to_slack_mrkdwn"]

_SCHEMES = ("http://", "https://", "mailto:")
_MARKS: dict[Kind, str] = {"bold": "*", "italic": "_", "strike": "~"}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quote_lines(inner: str) -> str:
    return "\n".join(f"> {line}" for line in inner.split("\n"))


class SlackRenderer:
    def text(self, text: str) -> str:
        return _escape(text)

    def code(self, text: str) -> str:
        return f"`{_escape(text)}`"

    def styled(self, kind: Kind, inner: str) -> str:
        mark = _MARKS[kind]
        return f"{mark}{inner}{mark}"

    def link(self, label: str, url: str, *, bare: bool) -> str:
        if not url.startswith(_SCHEMES):
            return label if bare else f"{label} ({_escape(url)})"
        # "|" and ">" would end the link's control sequence early.
        target = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
        return f"<{target}>" if bare else f"<{target}|{label}>"

    def code_block(self, info: str, code: str) -> str:
        return f"```\n{_escape(code)}\n```"

    def heading(self, inner: str) -> str:
        return f"*{inner}*"

    def quote(self, inner: str) -> str:
        return quote_lines(inner)

    def table(self, grid: str) -> str:
        return self.code_block("", grid)


def to_slack_mrkdwn(md: str) -> str:
    return convert(md, SlackRenderer())
