"""PostgresStorage only: schema versions, refused connections, several replicas at once.

What every backend shares is in test_storage.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr, ValidationError

from gateway.app import build_storage
from gateway.config import StorageConfig
from runtime.errors import StorageError
from runtime.history import AssistantEntry, UserEntry
from runtime.storage.base import RunCommit, SessionRecord
from runtime.storage.postgres import PostgresStorage, describe_url
from runtime.storage.schema import LATEST_VERSION
from runtime.storage.sqlite import SqliteStorage
from tests.postgres_server import free_port

pytestmark = pytest.mark.postgres


def session(updated_at: float = 2.0) -> SessionRecord:
    return SessionRecord(
        id="s1",
        agent="agent",
        sender="telegram:user:1",
        topic_key="main",
        title=None,
        created_at=1.0,
        updated_at=updated_at,
    )


async def fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(sql)).fetchall()


async def test_replicas_opening_together_migrate_once(postgres_url: str) -> None:
    stores = [PostgresStorage(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        assert all(s.is_open for s in stores)
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert await fetch(postgres_url, "SELECT version FROM schema_version") == [(LATEST_VERSION,)]


async def test_newer_schema_version_is_refused(postgres_url: str) -> None:
    store = PostgresStorage(postgres_url)
    await store.open()
    await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("UPDATE schema_version SET version = %s", (LATEST_VERSION + 1,))
    with pytest.raises(StorageError) as info:
        await store.open()
    assert f"version {LATEST_VERSION + 1}" in str(info.value)
    assert "[storage] url" in str(info.value)
    assert not store.is_open


async def test_refused_connection_names_server_not_password() -> None:
    url = f"postgresql://bob:s3cret@127.0.0.1:{free_port()}/gateway"
    store = PostgresStorage(url, connect_timeout=2.0)
    with pytest.raises(StorageError) as info:
        await store.open()
    message = str(info.value)
    assert message.startswith("The PostgreSQL database postgresql://bob@127.0.0.1:")
    assert "failed to open" in message
    assert "s3cret" not in message
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert not store.is_open


def test_describe_url_drops_the_password() -> None:
    assert (
        describe_url("postgres://u:pw@db.example:5433/app") == "postgresql://u@db.example:5433/app"
    )
    assert describe_url("postgresql:///app") == "postgresql://localhost/app"


async def test_commits_from_two_replicas_never_interleave(postgres_url: str) -> None:
    a, b = PostgresStorage(postgres_url), PostgresStorage(postgres_url)
    await a.open()
    await b.open()
    try:
        await asyncio.gather(
            *(
                (a if n % 2 else b).commit_run(
                    RunCommit(
                        session=session(float(n)),
                        entries=[UserEntry(text=f"q{n}"), AssistantEntry(text=f"a{n}")],
                    )
                )
                for n in range(12)
            )
        )
        entries = await a.load_entries("s1")
    finally:
        await a.close()
        await b.close()
    assert len(entries) == 24
    for user, assistant in zip(entries[::2], entries[1::2], strict=True):
        assert isinstance(user, UserEntry)
        assert isinstance(assistant, AssistantEntry)
        assert assistant.text == "a" + user.text[1:]


async def test_config_url_selects_postgres(postgres_url: str) -> None:
    store = build_storage(StorageConfig(url=SecretStr(postgres_url), path=Path("unused.db")))
    assert isinstance(store, PostgresStorage)
    await store.open()
    try:
        assert await store.unanswered_inbound() == []
    finally:
        await store.close()
    assert isinstance(build_storage(StorageConfig()), SqliteStorage)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:///x.db", "localhost"])
def test_config_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        StorageConfig(url=SecretStr(url))
    [error] = info.value.errors()
    assert error["loc"] == ("url",)
    assert "postgresql://" in error["msg"]
    assert url not in str(info.value)  # the URL may hold a password: never echoed


async def test_notify_wakes_another_replica_and_leases_are_shared(postgres_url: str) -> None:
    a, b = PostgresStorage(postgres_url), PostgresStorage(postgres_url)
    await a.open()
    await b.open()
    try:
        woken: asyncio.Queue[str] = asyncio.Queue()
        await b.listen("inbox", woken.put_nowait)  # closed with b
        assert await a.try_acquire_lease("conv", "replica-a", 60.0)
        assert not await b.try_acquire_lease("conv", "replica-b", 60.0)
        await a.notify("inbox", "telegram:7")
        assert await asyncio.wait_for(woken.get(), 10.0) == "telegram:7"
    finally:
        await b.close()  # cancels b's listener task and closes its connection
        await a.close()
    assert not b.is_open
