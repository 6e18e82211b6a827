"""Byte sizes as people read them, for attachment notes the agent sees."""

from __future__ import annotations

from typing import Final

MIB: Final = 1024 * 1024
MAX_DOWNLOAD: Final = 10 * MIB  # larger images become a note instead of an upload


def human_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    if size < 1024:
        return f"{size} bytes"
    if size < MIB:
        return f"{size / 1024:.1f} KB"
    return f"{size / MIB:.1f} MB"
