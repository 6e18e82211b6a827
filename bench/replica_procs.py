"""The replica benchmark's processes: its PostgreSQL server and their CPU time.

The test server (``tests.postgres_server``) turns durability off for speed; the benchmark
starts it with ``durable=True`` (PostgreSQL's own defaults: fsync and synchronous commit
on), because comparing SQLite (WAL, ``synchronous = NORMAL``: synced at checkpoints) with a
server that never syncs would flatter PostgreSQL.
CPU time is read from /proc: the gateways are children of the benchmark, the PostgreSQL
server is found by its port (its backends are children of the postmaster).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.gateway_procs import Gateways
from tests.postgres_server import PostgresServer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _ticks(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, user+system clock ticks, start time) of a process, None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name in parentheses may hold spaces
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def postgres_pids(port: int) -> list[int]:
    """The bench's PostgreSQL server: its postmaster (``-p PORT``) and the children."""
    flag = f"-p {port} ".encode()
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    roots = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if flag in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                roots.add(pid)
    children = [pid for pid in pids if (t := _ticks(pid)) is not None and t[0] in roots]
    return [*roots, *children]


@dataclass(frozen=True, kw_only=True, slots=True)
class Cpu:
    """CPU time of the gateways and of the PostgreSQL server (none for SQLite)."""

    gateways: Gateways
    postgres_port: int | None

    def sample(self) -> dict[tuple[str, int, int], int]:
        """Ticks by (side, pid, start time): a pid reused by a new process is a new key."""
        sides = [("gateway", proc.pid) for proc in self.gateways.procs]
        if self.postgres_port is not None:
            sides += [("postgres", pid) for pid in postgres_pids(self.postgres_port)]
        found = {}
        for side, pid in sides:
            if (t := _ticks(pid)) is not None:
                found[(side, pid, t[2])] = t[1]
        return found

    def spent(self, before: dict[tuple[str, int, int], int]) -> tuple[float, float]:
        """(gateway, PostgreSQL) CPU seconds since ``before``."""
        after = self.sample()
        spent = Counter[str]()
        for key, ticks in after.items():
            spent[key[0]] += ticks - before.get(key, 0)
        return spent["gateway"] / CLOCK_TICKS, spent["postgres"] / CLOCK_TICKS


@asynccontextmanager
async def database(server: PostgresServer, name: str) -> AsyncIterator[str]:
    """A fresh database on the bench's server, dropped afterwards."""
    async with await psycopg.AsyncConnection.connect(server.admin_url, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        try:
            yield server.url(name)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
