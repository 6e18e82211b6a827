"""The helpers every adapter shares: recent ids, thread ownership (memory then storage,
surviving a restart), sizes, and one command catalog behind every platform's menu."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from adapters.common.commands import COMMANDS, GREETING, is_command_name
from adapters.common.memory import Recent, ThreadOwnership
from adapters.common.sizes import MIB, human_size
from gateway.commands import help_text, parse_command
from runtime.storage.sqlite import SqliteStorage

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports audioop
    from adapters.discord.inbound import slash_commands
from adapters.slack.inbound import SLASH_SUBCOMMANDS


def test_recent_is_a_bounded_set_that_forgets_the_oldest() -> None:
    recent = Recent(size=2)
    assert recent.add("a")
    assert recent.add("b")
    assert not recent.add("a")  # seen again: now the newest
    assert recent.add("c")  # pushes out "b", the oldest
    assert ("a" in recent, "b" in recent, "c" in recent) == (True, False, True)
    assert len(recent) == 2


async def test_thread_ownership_is_remembered_in_storage_across_a_restart(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "gateway.db")
    await storage.open()
    try:
        first = ThreadOwnership("slack", storage)
        assert not await first.owns("C1:1700.1")
        await first.claim("C1:1700.1", "slack:T1:thread:C1:1700.1")
        assert await first.owns("C1:1700.1")
        restarted = ThreadOwnership("slack", storage)
        assert await restarted.owns("C1:1700.1")
        assert not await ThreadOwnership("discord", storage).owns("C1:1700.1")
        assert await storage.get_binding("slack", "C1:1700.1") == "slack:T1:thread:C1:1700.1"
    finally:
        await storage.close()


async def test_thread_ownership_without_storage_lives_in_memory() -> None:
    owned = ThreadOwnership("discord", None, size=1)
    await owned.claim("1", "discord:thread:1")
    assert await owned.owns("1")
    await owned.claim("2", "discord:thread:2")
    assert not await owned.owns("1")  # forgotten: nothing to ask


async def test_a_storage_failure_reads_as_not_owned(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "gateway.db")  # never opened: every call fails
    owned = ThreadOwnership("slack", storage)
    assert not await owned.owns("C1:1")
    await owned.claim("C1:1", "scope")  # logged, not raised
    assert await owned.owns("C1:1")  # memory still has it


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, "size unknown"), (0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KB")],
)
def test_human_size(size: int | None, text: str) -> None:
    assert human_size(size) == text


def test_human_size_in_megabytes() -> None:
    assert human_size(5 * MIB) == "5.0 MB"


def test_every_menu_is_the_one_catalog() -> None:
    names = list(COMMANDS)

    async def handler(interaction: object, text: str) -> None:
        raise AssertionError("not called")

    assert [c.name for c in slash_commands(handler)] == names
    assert frozenset(names) == SLASH_SUBCOMMANDS
    assert all(f"/{name} - " in help_text() for name in names)
    assert all(parse_command(f"/{name}") is not None for name in names)
    assert is_command_name(GREETING)
    assert parse_command("/nosuchcommand") is None
