"""How a platform shows text: what markdown becomes there, and how it counts length.

Each adapter sets its own ``TextFormat`` (``adapter.text_format``); the gateway's
delivery asks it to render a chunk and to measure the result, so the gateway holds no
table of platform converters or limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from adapters.text.plain import to_plain_text

__all__ = ["Counter", "TextFormat", "identity", "plain_length"]


class Counter(Protocol):
    """A message's length as the platform counts it; ``markup`` says whether ``text``
    is the platform's markup (counted as shown) or plain text."""

    def __call__(self, text: str, /, *, markup: bool) -> int: ...


def identity(text: str) -> str:
    return text


def plain_length(text: str, *, markup: bool) -> int:
    return len(text)


@dataclass(frozen=True, kw_only=True, slots=True)
class TextFormat:
    """``limit`` is one message's maximum length in the unit ``measure`` counts;
    ``markup`` renders markdown for the platform, ``plain`` is the fallback when the
    platform rejects that markup."""

    limit: int
    markup: Callable[[str], str]
    plain: Callable[[str], str] = to_plain_text
    counter: Counter = plain_length

    def render(self, md: str, *, markup: bool = True) -> str:
        return self.markup(md) if markup else self.plain(md)

    def measure(self, text: str, *, markup: bool = True) -> int:
        """``text`` (as rendered) measured the way the platform checks its limit."""
        return self.counter(text, markup=markup)
