from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
import pytest

from runtime.storage.postgres import PostgresStorage
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_api import FakeTelegram
from tests.postgres_server import REQUIRE_ENV, PostgresServer, PostgresUnavailable
from tests.storage_backends import Backend


@pytest.fixture
async def llm_server() -> AsyncIterator[FakeLLMServer]:
    server = FakeLLMServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    """A SQLite store in the test's folder (test_storage.py runs every backend instead)."""
    store = SqliteStorage(tmp_path / "gw.db")
    await store.open()
    yield store
    await store.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (tests marked ``postgres``)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"PostgreSQL tests are required ({REQUIRE_ENV}=1) but {exc}")
        pytest.skip(f"no PostgreSQL test server: {exc}")
    try:
        server.start()
        yield server
    finally:
        server.stop()


_database_numbers = itertools.count(1)


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database of this test's own on the session's server."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    async with await psycopg.AsyncConnection.connect(
        postgres_server.admin_url, autocommit=True
    ) as admin:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        try:
            yield postgres_server.url(name)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every storage backend, each on a database of this test's own."""
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path / "gateway.db")
    url: str = request.getfixturevalue("postgres_url")
    return _postgres_backend(url)


def _sqlite_backend(path: Path) -> Backend:
    async def fetch(sql: str) -> list[tuple[Any, ...]]:
        async with aiosqlite.connect(path) as db:
            return [tuple(row) for row in await db.execute_fetchall(sql)]

    return Backend(name="sqlite", new_store=lambda: SqliteStorage(path), fetch=fetch)


def _postgres_backend(url: str) -> Backend:
    async def fetch(sql: str) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cursor = await conn.execute(sql)
            return await cursor.fetchall()

    return Backend(
        name="postgres",
        new_store=lambda: PostgresStorage(url, min_connections=1, max_connections=4),
        fetch=fetch,
    )
