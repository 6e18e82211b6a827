from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from runtime.storage.sqlite import SqliteStorage
from tests.fakes.llm_server import FakeLLMServer
from tests.storage_backends import Backend


@pytest.fixture
async def llm_server() -> AsyncIterator[FakeLLMServer]:
    server = FakeLLMServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(params=["sqlite"])
async def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every storage backend, each on a database of this test's own."""
    assert request.param == "sqlite"
    return _sqlite_backend(tmp_path / "gateway.db")


def _sqlite_backend(path: Path) -> Backend:
    async def fetch(sql: str) -> list[tuple[Any, ...]]:
        async with aiosqlite.connect(path) as db:
            return [tuple(row) for row in await db.execute_fetchall(sql)]

    return Backend(name="sqlite", new_store=lambda: SqliteStorage(path), fetch=fetch)
