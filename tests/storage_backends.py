"""The storage backends the storage tests run against, behind one small test seam.

A ``Backend`` hands out stores on one database that belongs to the test (a SQLite file
in ``tmp_path``, or a fresh PostgreSQL database on the session's server), and reads that
database through a connection of its own, never the store's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.history import StoredEntry
from runtime.storage.base import SessionRecord, Storage


class StoreUnderTest(Storage, Protocol):
    """A backend as the tests inspect it: the protocol plus the read-backs that only
    tests need (kept off the ``Storage`` seam, which nothing in the gateway calls them)."""

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def load_entries(self, session_id: str) -> list[StoredEntry]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Backend:
    name: str
    new_store: Callable[[], StoreUnderTest]
    """A new, unopened store on this test's database."""
    fetch: Callable[[str], Awaitable[list[tuple[Any, ...]]]]
    """Run one SELECT on this test's database through a separate connection."""

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[StoreUnderTest]:
        """An open store, closed even when the test fails (a leaked connection would
        keep the test process from exiting)."""
        store = self.new_store()
        await store.open()
        try:
            yield store
        finally:
            await store.close()
