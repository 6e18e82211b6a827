"""Conversation history entries and their JSON form.

History is append-only. Each entry is a frozen dataclass with a ``kind`` tag; storage
keeps them as JSON (``entry_to_json`` / ``entry_from_json``). A ``CompactMarker`` is
only ever found in storage: it records a compaction, and a resume rebuilds the model
context as ``[SummaryEntry, retained entries..., entries after the marker...]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never


@dataclass(frozen=True, kw_only=True, slots=True)
class Speaker:
    """Who said a user message: display name and platform-qualified id."""

    name: str
    id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Image:
    """An image attached to a user message, already downloaded."""

    media_type: str
    data_base64: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # raw JSON text as the model produced it


@dataclass(frozen=True, kw_only=True, slots=True)
class UserEntry:
    kind: Literal["user"] = "user"
    text: str
    speaker: Speaker | None = None
    images: tuple[Image, ...] = ()
    steered: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class AssistantEntry:
    kind: Literal["assistant"] = "assistant"
    text: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    interrupted: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolResultEntry:
    kind: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str
    content: str
    is_error: bool = False
    # Images the tool returned (MCP image content); providers that accept images in tool
    # results send them, the others rely on the note ``content`` carries for each.
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class SummaryEntry:
    """Stands in for the turns a compaction summarised."""

    kind: Literal["summary"] = "summary"
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class CompactMarker:
    """Stored record of a compaction.

    ``retained`` counts the non-marker entries written before the marker that stay in
    context verbatim; ``archived`` are the entries the summary replaced (kept in the
    archive table, not in the model context).
    """

    kind: Literal["compact"] = "compact"
    summary: str
    retained: int
    archived: tuple[Entry, ...] = field(default=())


Entry = UserEntry | AssistantEntry | ToolResultEntry | SummaryEntry
StoredEntry = Entry | CompactMarker


def render_user_text(entry: UserEntry) -> str:
    """The text a model sees for a user entry: the speaker's name goes with it, so a
    model in a shared thread can tell participants apart."""
    if entry.speaker is None:
        return entry.text
    return f"[{entry.speaker.name}] {entry.text}"


def render_assistant_text(entry: AssistantEntry) -> str:
    """The text a model sees for its own earlier reply; an interrupted one says so."""
    if entry.interrupted:
        return f"{entry.text}\n[reply interrupted]" if entry.text else "[reply interrupted]"
    return entry.text


def entry_to_dict(entry: StoredEntry) -> dict[str, Any]:
    match entry:
        case UserEntry():
            return {
                "kind": "user",
                "text": entry.text,
                "speaker": None
                if entry.speaker is None
                else {"name": entry.speaker.name, "id": entry.speaker.id},
                "images": [_image_dict(i) for i in entry.images],
                "steered": entry.steered,
            }
        case AssistantEntry():
            return {
                "kind": "assistant",
                "text": entry.text,
                "thinking": entry.thinking,
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in entry.tool_calls
                ],
                "interrupted": entry.interrupted,
            }
        case ToolResultEntry():
            # ``images`` only when there are some, so a row without images stays the same
            # JSON it was before tool results could carry images.
            images = {"images": [_image_dict(i) for i in entry.images]} if entry.images else {}
            return {
                "kind": "tool_result",
                "call_id": entry.call_id,
                "name": entry.name,
                "content": entry.content,
                "is_error": entry.is_error,
                **images,
            }
        case SummaryEntry():
            return {"kind": "summary", "text": entry.text}
        case CompactMarker():
            return _compact_to_dict(entry)
        case _:
            assert_never(entry)


def entry_from_dict(data: dict[str, Any]) -> StoredEntry:
    kind = data["kind"]
    if kind == "user":
        speaker = data.get("speaker")
        return UserEntry(
            text=data["text"],
            speaker=None if speaker is None else Speaker(name=speaker["name"], id=speaker["id"]),
            images=_images_from(data),
            steered=bool(data.get("steered", False)),
        )
    if kind == "assistant":
        return AssistantEntry(
            text=data.get("text", ""),
            thinking=data.get("thinking", ""),
            tool_calls=tuple(
                ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
                for c in data.get("tool_calls", [])
            ),
            interrupted=bool(data.get("interrupted", False)),
        )
    if kind == "tool_result":
        return ToolResultEntry(
            call_id=data["call_id"],
            name=data["name"],
            content=data["content"],
            is_error=bool(data.get("is_error", False)),
            images=_images_from(data),
        )
    if kind == "summary":
        return SummaryEntry(text=data["text"])
    if kind == "compact":
        return _compact_from_dict(data)
    raise ValueError(f"unknown history entry kind {kind!r}")


def _compact_to_dict(marker: CompactMarker) -> dict[str, Any]:
    return {
        "kind": "compact",
        "summary": marker.summary,
        "retained": marker.retained,
        "archived": [entry_to_dict(e) for e in marker.archived],
    }


def _compact_from_dict(data: dict[str, Any]) -> CompactMarker:
    archived: list[Entry] = []
    for item in data.get("archived", []):
        e = entry_from_dict(item)
        if not isinstance(e, CompactMarker):  # markers never nest; a stray one is dropped
            archived.append(e)
    return CompactMarker(
        summary=data["summary"], retained=int(data["retained"]), archived=tuple(archived)
    )


def _images_from(data: dict[str, Any]) -> tuple[Image, ...]:
    return tuple(
        Image(media_type=i["media_type"], data_base64=i["data_base64"])
        for i in data.get("images", [])
    )


def entry_to_json(entry: StoredEntry) -> str:
    return json.dumps(entry_to_dict(entry), ensure_ascii=False, separators=(",", ":"))


def entry_from_json(text: str) -> StoredEntry:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a history entry must be a JSON object")
    return entry_from_dict(data)


def rebuild_context(stored: list[StoredEntry]) -> list[Entry]:
    """Model context from a stored log: after the last compact marker, the summary,
    then the entries it retained, then everything written after it."""
    last = max((i for i, e in enumerate(stored) if isinstance(e, CompactMarker)), default=None)
    if last is None:
        return [e for e in stored if not isinstance(e, CompactMarker)]
    marker = stored[last]
    assert isinstance(marker, CompactMarker)
    before: list[Entry] = [e for e in stored[:last] if not isinstance(e, CompactMarker)]
    retained = before[len(before) - marker.retained :] if marker.retained else []
    after: list[Entry] = [e for e in stored[last + 1 :] if not isinstance(e, CompactMarker)]
    return [SummaryEntry(text=marker.summary), *retained, *after]


def _image_dict(image: Image) -> dict[str, str]:
    return {"media_type": image.media_type, "data_base64": image.data_base64}
