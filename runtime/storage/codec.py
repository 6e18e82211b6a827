"""Rows <-> records, shared by every backend, so both store exactly the same JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from runtime.errors import StorageError
from runtime.history import CompactMarker, StoredEntry, entry_from_dict, entry_to_dict
from runtime.storage.base import InboxRecord, SessionRecord

SESSION_FIELDS = ("id", "agent", "sender", "topic_key", "title", "created_at", "updated_at")
SESSION_COLUMNS = ", ".join(SESSION_FIELDS)
INBOX_COLUMNS = "id, platform, payload, state, accepted_at"


def encode(build: Callable[[], object], what: str) -> str:
    try:
        return json.dumps(build(), ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise StorageError(f"Could not encode {what} as JSON for storage: {exc}.") from exc


def encode_entry(entry: StoredEntry, what: str) -> str:
    return encode(lambda: entry_to_dict(entry), what)


def encode_archive(marker: CompactMarker, what: str) -> str:
    return encode(lambda: [entry_to_dict(e) for e in marker.archived], what)


def encode_marker(marker: CompactMarker, archive_id: int, what: str) -> str:
    """The marker's entry JSON points at its archive instead of repeating its entries."""
    bare = dataclasses.replace(marker, archived=())
    return encode(lambda: {**entry_to_dict(bare), "archive_id": archive_id}, what)


def decode_entry(data: str, archived: str | None, where: str) -> StoredEntry:
    try:
        fields = json.loads(data)
        if archived is not None:
            fields["archived"] = json.loads(archived)
        fields.pop("archive_id", None)
        return entry_from_dict(fields)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"{where} holds an unreadable entry: {exc!r}.") from exc


def session_values(session: SessionRecord) -> tuple[Any, ...]:
    return tuple(getattr(session, name) for name in SESSION_FIELDS)


def session_record(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(**dict(zip(SESSION_FIELDS, row, strict=True)))


def inbox_record(row: Sequence[Any]) -> InboxRecord:
    ident, platform, payload, state, accepted_at = row
    return InboxRecord(
        id=ident, platform=platform, payload=payload, state=state, accepted_at=accepted_at
    )


def in_order(ids: Sequence[str], records: Sequence[InboxRecord]) -> list[InboxRecord]:
    """``records`` in the order of ``ids`` (SQL's IN/ANY promises no order)."""
    by_id = {record.id: record for record in records}
    return [by_id[ident] for ident in ids if ident in by_id]
