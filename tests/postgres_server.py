"""A real PostgreSQL server for the tests, from Debian's ``postgresql`` package.

One server per test session: ``initdb`` into a temporary directory, ``pg_ctl start`` on a
free port on 127.0.0.1 with its socket in that directory, ``pg_ctl stop -m fast`` at the
end. initdb refuses to run as root, so as root the server runs as the ``postgres`` user
(which the Debian package creates) over a directory chowned to it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

REQUIRE_ENV = "AGENT_GATEWAY_REQUIRE_POSTGRES"
_START_TIMEOUT = 60


class PostgresUnavailable(Exception):
    """This machine cannot run the test server; the message says why and how to fix it."""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/*/bin that has initdb."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
            "install it with `apt-get install postgresql`."
        )
    return Path(candidates[-1]).parent


def _run_as() -> list[str]:
    """The prefix that runs a server command as a user initdb accepts."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root but there is no `postgres` user to run the server as; "
            "install Debian's postgresql package, which creates it."
        ) from exc
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root but `runuser` is missing to drop to postgres.")
    return [runuser, "-u", "postgres", "--"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """``durable=True`` keeps PostgreSQL's own defaults (fsync, synchronous commit, full
    page writes) for measuring a deployment; the tests turn them off for speed."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self._bindir = find_bindir()
        self._prefix = _run_as()
        self._root = Path(tempfile.mkdtemp(prefix="agent-gateway-pg-"))
        self._data = self._root / "data"
        self.port = 0

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        if self._prefix:
            entry = pwd.getpwnam("postgres")
            os.chown(self._root, entry.pw_uid, entry.pw_gid)
        self._command(
            "initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.port = free_port()
        sync = "on" if self.durable else "off"
        options = (
            f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1"
            f" -c fsync={sync} -c synchronous_commit={sync} -c full_page_writes={sync}"
        )
        self._command(
            "pg_ctl", "-D", str(self._data), "-l", str(self._root / "server.log"),
            "-o", options, "-w", "-t", str(_START_TIMEOUT), "start",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            if (self._data / "postmaster.pid").exists():
                self._command("pg_ctl", "-D", str(self._data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def log_tail(self) -> str:
        log = self._root / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def _command(self, name: str, *args: str) -> None:
        result = subprocess.run(
            [*self._prefix, str(self._bindir / name), *args],
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT + 30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{name} failed with exit code {result.returncode}:\n{result.stderr}"
                f"\n{self.log_tail()}"
            )
