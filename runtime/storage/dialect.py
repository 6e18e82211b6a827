"""What a SQL backend hands the shared queries: a connection seam and its dialect."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Row = tuple[Any, ...]


class SqlConn(Protocol):
    """One borrowed connection, in the backend's transaction (or autocommit)."""

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run a statement that returns rows (SELECT, or anything ``RETURNING``)."""
        ...

    async def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement without rows; returns the count of rows it changed."""
        ...

    async def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Dialect:
    """The expressions the two SQL dialects spell differently."""

    archive_id: str
    """The archive id inside a compact marker's JSON in ``e.data``, as an integer."""
    insert_order: str
    """The column that orders rows of ``sessions`` and ``inbox`` as inserted."""
    now: str
    """The lease clock in seconds since the epoch: on PostgreSQL the server's, so
    replicas whose clocks disagree still agree on when a lease ends."""
    in_list: str
    """``column <in_list>`` matches a list bound to its one ``?``."""
    list_param: Callable[[Sequence[str]], object]
    """A list of strings as the one parameter ``in_list`` takes."""


def capital(label: str) -> str:
    """``label`` to begin a sentence."""
    return label[:1].upper() + label[1:]
