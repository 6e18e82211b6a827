"""Child process for the storage crash test (run by tests/test_storage.py).

Usage: storage_crash_child.py DB_PATH SESSION_ID

Commits run A on SESSION_ID, then starts committing run B on the same session: the
entries of run B are inserted inside the open transaction, then the child prints READY
and blocks (its event loop included) until the parent SIGKILLs it. The values of run A
are mirrored in the test's assertions.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator

from runtime.history import AssistantEntry, StoredEntry, UserEntry
from runtime.storage.base import RunCommit, SessionRecord, UsageRecord
from runtime.storage.sqlite import SqliteStorage

# Never hang a test run if the parent forgets us; exit without committing.
_ORPHAN_TIMEOUT = 60.0


class _StallingEntries(list[StoredEntry]):
    """Entries that stop the world once every one of them has been inserted."""

    def __iter__(self) -> Iterator[StoredEntry]:
        yield from super().__iter__()
        # commit_run awaited the insert of the last entry before asking for the next.
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        threading.Event().wait(_ORPHAN_TIMEOUT)
        os._exit(3)


def _session(session_id: str, title: str, updated_at: float) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        agent="agent",
        sender="telegram:user:1",
        topic_key="crash",
        title=title,
        created_at=1.0,
        updated_at=updated_at,
    )


async def main(path: str, session_id: str) -> None:
    storage = SqliteStorage(path)
    await storage.open()
    await storage.commit_run(
        RunCommit(
            session=_session(session_id, "Run A", 2.0),
            entries=[UserEntry(text="question A"), AssistantEntry(text="answer A")],
            usage=[UsageRecord(model="m", prompt_tokens=10, completion_tokens=5, at=2.0)],
        )
    )
    await storage.commit_run(
        RunCommit(
            session=_session(session_id, "Run B", 3.0),
            entries=_StallingEntries(
                [UserEntry(text="question B"), AssistantEntry(text="answer B")]
            ),
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
