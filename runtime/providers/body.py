"""Reading a 200 answer's body: server-sent events, or one complete JSON message.

The whole per-chunk path of a model call is ``BodyParser.feed``: raw body bytes in,
provider events out, with no async generator of its own (SSE lines, JSON decoding and
the provider's folding all happen in one synchronous pass per network chunk). A body
that opens with ``{`` is a complete JSON message instead of a stream (some proxies
answer a streaming request that way); it is collected and folded at the end.

``done`` turns true at the stream's terminator (``[DONE]``, ``message_stop``); the
caller then stops parsing but still reads the body to its end, so httpcore can return
the connection to the pool instead of closing it.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.providers.base import ProviderEvent

_DETAIL_LIMIT = 300
# Bound once: ``json.loads`` would detect the encoding and build a decoder per call.
_DECODER = json.JSONDecoder()


class StreamBroken(Exception):
    """Raised by a parser: the stream was malformed, cut short or carried an error.

    ``retryable`` marks breaks worth another attempt if nothing was yielded yet;
    ``overloaded`` marks a server-side error reported inside the stream.
    """

    def __init__(self, detail: str, *, retryable: bool = False, overloaded: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable
        self.overloaded = overloaded


def clip(text: str) -> str:
    """One line of at most ``_DETAIL_LIMIT`` characters, for logs and messages."""
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "\u2026"


def load_json(data: bytes | str) -> dict[str, Any]:
    """A payload (UTF-8, as SSE is) as a JSON object, or ``StreamBroken``."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
        if text[:1].isspace():
            text = text.lstrip()
        value, end = _DECODER.raw_decode(text)
        if end != len(text) and not text[end:].isspace():
            raise ValueError("extra data after the JSON value")
    except ValueError as exc:  # UnicodeDecodeError included
        raise StreamBroken(f"malformed JSON in the stream ({_shown(data)})") from exc
    if type(value) is not dict:
        raise StreamBroken(f"unexpected JSON in the stream ({_shown(data)})")
    return value


def _shown(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return clip(text)


class SseDecoder:
    """Incremental server-sent events: ``feed`` returns the ``(event, data)`` pairs a
    chunk completes. Lines may end in CRLF, LF or CR; an unterminated event at EOF is
    dropped, as the SSE spec says. ``data`` stays bytes: ``json.loads`` takes them."""

    __slots__ = ("_buffer", "_data", "_event")

    def __init__(self) -> None:
        self._buffer = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if (
            not self._buffer
            and not self._data
            and chunk[:6] == b"data: "
            and chunk[-2:] == b"\n\n"
            and chunk.count(b"\n") == 2
            and b"\r" not in chunk
        ):
            # The usual network chunk: exactly one complete one-line event.
            name = self._event.decode() if self._event else "message"
            self._event = b""
            return [(name or "message", chunk[6:-2])]
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = _normalise_newlines(buffer)
        end = buffer.rfind(b"\n")
        if end < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[end + 1 :]
        events: list[tuple[str, bytes]] = []
        for line in buffer[:end].split(b"\n"):
            if line:
                self._field(line)
            elif self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append((self._event.decode() or "message", data))
                self._event, self._data = b"", []
            else:
                self._event = b""
        return events

    def _field(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value[:1] == b" " else value)
            return
        if line[:1] == b":":
            return  # a comment (keep-alive)
        name, _, value = line.partition(b":")
        value = value[1:] if value[:1] == b" " else value
        if name == b"event":
            self._event = value
        elif name == b"data":
            self._data.append(value)


def _normalise_newlines(buffer: bytes) -> bytes:
    # A trailing CR may be the first half of a CRLF split across chunks: kept as it is,
    # it is rewritten with the next chunk.
    if buffer.endswith(b"\r"):
        return buffer[:-1].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + b"\r"
    return buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


class BodyParser:
    """Base of each provider's parser. Subclasses implement ``on_event`` (one SSE event
    into ``out``), ``on_message`` (a complete JSON answer) and ``on_end`` (what is only
    known at the end: finished tool calls, usage); ``terminator`` names the stream's end
    for the error when it is missing."""

    terminator = "its terminator"

    def __init__(self) -> None:
        self.done = False
        self._sse = SseDecoder()
        self._json: bytearray | None = None
        self._sniffed = False

    def feed(self, chunk: bytes) -> list[ProviderEvent]:
        if not self._sniffed:
            head = chunk.lstrip()
            if not head:
                return []
            self._sniffed = True
            if head[:1] == b"{":
                self._json = bytearray()
        if self._json is not None:
            self._json += chunk
            return []
        out: list[ProviderEvent] = []
        for event, data in self._sse.feed(chunk):
            self.on_event(event, data, out)
            if self.done:
                break  # anything after the terminator is drained, not parsed
        return out

    def finish(self) -> list[ProviderEvent]:
        """The events known only at the end; ``StreamBroken`` if the body was cut short."""
        if self._json is not None:
            events = self.on_message(load_json(bytes(self._json)))
            self.done = True
            return events + self.on_end()
        if not self.done:
            raise StreamBroken(f"the stream ended without {self.terminator}", retryable=True)
        return self.on_end()

    def on_event(self, event: str, data: bytes, out: list[ProviderEvent]) -> None:
        raise NotImplementedError

    def on_message(self, message: dict[str, Any]) -> list[ProviderEvent]:
        raise NotImplementedError

    def on_end(self) -> list[ProviderEvent]:
        raise NotImplementedError
