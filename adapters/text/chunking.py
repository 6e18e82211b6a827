"""Split a long reply into platform-sized messages without breaking code fences.

A cut prefers, in order: a blank line outside any code fence, a line break outside a
fence, a line break inside a fence, a space, and only then a hard cut. Each kind is first
looked for in the second half of the window (so messages are not needlessly short), then
anywhere. A chunk that ends inside a fence is closed there and the fence is reopened, with
its language, at the start of the next chunk; the added lines count toward the limit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Fence", "close_open_fence", "fence_state", "parse_fence_open", "split_message"]

# Any indentation is accepted because LLMs indent fences inside list items.
_FENCE_OPEN = re.compile(r"[ \t]*(?P<marker>`{3,}|~{3,})(?P<info>[^\n]*)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Fence:
    """An open fenced code block: its marker run (```` ``` ````, ``~~~``...) and info string."""

    marker: str
    info: str

    @property
    def opener(self) -> str:
        return self.marker + self.info

    def is_closed_by(self, line: str) -> bool:
        """Whether `line` closes this fence (same character, at least as long, nothing else)."""
        stripped = line.strip()
        return len(stripped) >= len(self.marker) and stripped == self.marker[0] * len(stripped)


def parse_fence_open(line: str) -> Fence | None:
    """The fence `line` opens, or None if it is not a fence line."""
    match = _FENCE_OPEN.fullmatch(line)
    if match is None:
        return None
    marker, info = match["marker"], match["info"]
    if marker[0] == "`" and "`" in info:
        return None  # CommonMark: "```a```" on one line is inline code, not a fence
    return Fence(marker=marker, info=info.strip())


def _advance(fence: Fence | None, line: str) -> Fence | None:
    """The fence open after `line`, given the fence open before it."""
    if fence is None:
        return parse_fence_open(line)
    return None if fence.is_closed_by(line) else fence


def _open_fence(text: str) -> Fence | None:
    fence: Fence | None = None
    for line in text.split("\n"):
        fence = _advance(fence, line)
    return fence


def fence_state(text: str) -> str | None:
    """The opening line (marker and language, e.g. ```` ```python ````) of a fence left
    open at the end of `text`, or None when every fence is closed."""
    fence = _open_fence(text)
    return None if fence is None else fence.opener


def close_open_fence(text: str) -> str:
    """`text` with a fence left open at its end closed, for showing a partial reply."""
    fence = _open_fence(text)
    if fence is None:
        return text
    separator = "" if text.endswith("\n") else "\n"
    return f"{text}{separator}{fence.marker}"


def split_message(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """Split `text` into chunks of at most `limit` (see the module docstring).

    Whitespace at each cut is dropped; everything else is kept exactly, apart from the
    fence lines added to close and reopen a code block split across chunks. `measure`
    is how the platform counts a chunk (UTF-16 code units on Telegram, the rendered
    markup's length...); a chunk it finds too long is split again, smaller.
    """
    if limit < 1:
        raise ValueError(f"limit must be a positive number of characters, got {limit}.")
    if not text:
        return []
    chunks = [text] if len(text) <= limit else _Splitter(text, limit).split()
    if measure is len:
        return chunks
    return [piece for chunk in chunks for piece in _fit(chunk, limit, measure)]


def _fit(chunk: str, limit: int, measure: Callable[[str], int]) -> list[str]:
    size = measure(chunk)
    if size <= limit or len(chunk) <= 1:
        return [chunk]
    # Proportionally fewer characters: strictly shorter, so this ends.
    smaller = max(1, min(len(chunk) - 1, len(chunk) * limit // size))
    return [
        piece for part in _Splitter(chunk, smaller).split() for piece in _fit(part, limit, measure)
    ]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Line:
    start: int
    end: int  # index of the terminating "\n", or len(text) for the last line
    before: Fence | None
    after: Fence | None


def _scan_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    fence: Fence | None = None
    start = 0
    for line in text.split("\n"):
        after = _advance(fence, line)
        lines.append(_Line(start=start, end=start + len(line), before=fence, after=after))
        fence, start = after, start + len(line) + 1
    return lines


_Finder = Callable[[int, int], int | None]


class _Splitter:
    def __init__(self, text: str, limit: int) -> None:
        self.text = text
        self.limit = limit
        self.lines = _scan_lines(text)
        self.starts = [line.start for line in self.lines]
        self.content_end = len(text.rstrip())
        self.finders: tuple[_Finder, ...] = (
            self._paragraph_cut,
            self._line_cut,
            self._fenced_line_cut,
            self._word_cut,
        )

    def split(self) -> list[str]:
        chunks: list[str] = []
        start = self._skip_space(0)
        while start < len(self.text):
            chunk, cut = self._next_chunk(start)
            if chunk:
                chunks.append(chunk)
            start = self._skip_space(cut)
        return chunks

    def _line_at(self, pos: int) -> _Line:
        return self.lines[bisect_right(self.starts, pos) - 1]

    def _state_at(self, pos: int) -> Fence | None:
        line = self._line_at(pos)
        at_end = pos >= line.end or not self.text[pos : line.end].strip()
        return line.after if at_end else line.before

    def _skip_space(self, pos: int) -> int:
        """Where the next chunk starts: past the blank lines at a cut, but keeping the
        indentation of the line it starts on (it matters in code)."""
        text, end = self.text, pos
        while end < len(text) and text[end].isspace():
            end += 1
        if end == len(text):
            return end
        newline = text.rfind("\n", pos, end)
        if newline >= 0:
            return newline + 1
        return pos if pos == 0 or text[pos - 1] == "\n" else end

    def _reopen_line(self, fence: Fence | None) -> str:
        # The added lines may take at most half the limit, so text always makes progress.
        if fence is None:
            return ""
        if len(fence.opener) + len(fence.marker) + 2 <= self.limit // 2:
            return fence.opener + "\n"
        if 2 * len(fence.marker) + 2 <= self.limit // 2:
            return fence.marker + "\n"
        return ""

    def _next_chunk(self, start: int) -> tuple[str, int]:
        opened = self._state_at(start)
        prefix = self._reopen_line(opened)
        window = self.limit - len(prefix)
        while window > 0:
            cut = self._choose_cut(start, window)
            body = self.text[start:cut].rstrip()
            closing = self._state_at(cut)
            # Without a reopened prefix (a limit too small for fences) closing the fence
            # carried over would open a new one instead.
            if closing is None or (not prefix and closing is opened) or not body.strip():
                chunk = prefix + body if body.strip() else ""
            else:
                chunk = f"{prefix}{body}\n{closing.marker}"
            if len(chunk) <= self.limit:
                return chunk, cut
            window -= len(chunk) - self.limit
        cut = min(start + self.limit, len(self.text))
        return self.text[start:cut].rstrip(), cut

    def _choose_cut(self, start: int, window: int) -> int:
        if self.content_end - start <= window:
            return self.content_end
        high = start + window
        first = start
        while self.text[first] in " \t":
            first += 1
        low = first + 1  # a cut must leave some text in the chunk
        for floor in (max(low, start + window // 2), low):
            for finder in self.finders:
                cut = finder(floor, high)
                if cut is not None:
                    return cut
        return self._hard_cut(low, high)

    def _newlines(self, low: int, high: int) -> list[int]:
        """Positions of line breaks in [low, high], latest first."""
        found: list[int] = []
        pos = self.text.rfind("\n", low, high + 1)
        while pos >= 0:
            found.append(pos)
            pos = self.text.rfind("\n", low, pos)
        return found

    def _paragraph_cut(self, low: int, high: int) -> int | None:
        for pos in self._newlines(low, high):
            following = self._line_at(pos + 1)
            blank_next = self.text[following.start : following.end].strip() == ""
            if blank_next and self._state_at(pos) is None:
                return pos
        return None

    def _line_cut(self, low: int, high: int) -> int | None:
        return next((pos for pos in self._newlines(low, high) if not self._state_at(pos)), None)

    def _fenced_line_cut(self, low: int, high: int) -> int | None:
        for pos in self._newlines(low, high):
            line = self._line_at(pos)
            if line.before is None or line.after is None:
                continue  # outside a fence, or the line that opens or closes it
            if self._line_at(self._skip_space(pos)).after is not None:
                return pos  # (a cut just before the closing line would leave an empty block)
        return None

    def _word_cut(self, low: int, high: int) -> int | None:
        text = self.text
        pos = max(text.rfind(" ", low, high + 1), text.rfind("\t", low, high + 1))
        while pos >= low:
            line = self._line_at(pos)
            rest = text[pos:].lstrip(" \t")
            # A fence marker at the start of the next chunk would open a code block.
            if line.before is line.after and not rest.startswith(("```", "~~~")):
                return pos
            pos = max(text.rfind(" ", low, pos), text.rfind("\t", low, pos))
        return None

    def _hard_cut(self, low: int, high: int) -> int:
        line = self._line_at(high)
        if line.before is not line.after and line.start >= low:
            return line.start  # never split a fence line itself
        return max(high, low)
