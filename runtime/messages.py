"""An inbound user message as the runtime sees it, whatever platform it came from."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.history import Image, Speaker, UserEntry


@dataclass(frozen=True, kw_only=True, slots=True)
class UserMessage:
    """``origin`` is opaque adapter data (where to reply, what to react to); the runtime
    only hands it back on the run it starts or steers."""

    text: str
    speaker: Speaker | None = None
    images: tuple[Image, ...] = ()
    message_id: str | None = None
    origin: object | None = None
    inbox_id: str | None = None  # the durable inbox's key: answered when the run commits

    def to_entry(self, *, steered: bool) -> UserEntry:
        return UserEntry(text=self.text, speaker=self.speaker, images=self.images, steered=steered)
