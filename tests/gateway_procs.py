"""Running real `agent-gateway run` processes in tests, and waiting on what they do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import PREFIX as METRICS_PREFIX
from tests.fakes.llm_server import FakeLLMServer, RecordedRequest, last_user_text
from tests.fakes.telegram_api import FakeTelegram

REPO = Path(__file__).resolve().parents[1]
# A cold interpreter importing the gateway on a loaded 2-core machine takes seconds.
START_TIMEOUT = 60.0
STEP_TIMEOUT = 30.0
TITLE_PROMPT = "Summarize this conversation"
SHIPPED_CONFIG = REPO / "config" / "gateway.toml"
# Every variable the gateway reads: the auto provider's, and each ``${NAME}`` of the
# shipped configuration. Cleared for children and CLI tests, so the host's own keys and
# tokens cannot change what a test sees.
ENV_NAMES = tuple(
    [f"{p}_{s}" for p in ("OPENAI", "ANTHROPIC") for s in ("API_KEY", "BASE_URL", "MODEL")]
    + sorted(set(re.findall(r"\$\{([A-Z0-9_]+)", SHIPPED_CONFIG.read_text(encoding="utf-8"))))
)


def child_env(**values: str) -> dict[str, str]:
    """This process's environment without the gateway's variables, plus ``values``."""
    return {k: v for k, v in os.environ.items() if k not in ENV_NAMES} | values


@dataclass(slots=True, kw_only=True)
class GatewayProcs:
    """`agent-gateway run` children of one test; each one's output goes to its own log.

    Platform-neutral: the subclasses add the fake platform the gateways talk to."""

    directory: Path
    config: Path
    env: dict[str, str]
    llm: FakeLLMServer
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self) -> asyncio.subprocess.Process:
        log = self.directory / f"gateway-{len(self.procs) + 1}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.cli",
                "run",
                "-c",
                str(self.config),
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def url(self, n: int) -> str | None:
        """The ``n``-th gateway's HTTP address, once it has said it listens."""
        log = (self.directory / f"gateway-{n}.log").read_text(errors="replace")
        found = re.search(r"HTTP server listening on (http://\S+)", log)
        return None if found is None else found[1]

    async def ready(self, n: int) -> None:
        """Until the ``n``-th gateway answers /readyz with 200 (its adapters are up)."""
        async with aiohttp.ClientSession() as session:
            while True:
                url = self.url(n)
                if url is not None:
                    async with session.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def replicas(self, count: int) -> AsyncIterator[None]:
        """``count`` gateways started, each answering /readyz; every one killed after."""
        try:
            for _ in range(count):
                await self.start()
            for n in range(1, count + 1):
                await waited(f"replica {n} to be ready", self, self.ready(n), START_TIMEOUT)
            yield
        finally:
            await self.kill_all()

    async def kill_all(self) -> None:
        """SIGKILL every gateway still running: a failed test must not leave one behind."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def process_logs(self) -> list[str]:
        """Each gateway's log, then what the model was asked."""
        parts = []
        for n in range(1, len(self.procs) + 1):
            path = self.directory / f"gateway-{n}.log"
            parts.append(f"--- gateway {n} ---\n{path.read_text(errors='replace')}")
        asked = [last_user_text(r.json.get("messages") or []) for r in self.llm.requests]
        parts.append(f"--- the model was asked: {asked}")
        return parts

    def logs(self) -> str:
        return "\n".join(self.process_logs())


@dataclass(slots=True, kw_only=True)
class Gateways(GatewayProcs):
    """Gateways whose platform is the fake Telegram."""

    telegram: FakeTelegram

    async def counters(self, n: int) -> dict[str, float]:
        """The Telegram counters on the /metrics page of the ``n``-th gateway."""
        url = self.url(n)
        assert url is not None, self.logs()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/metrics") as response,
        ):
            page = await response.text()
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(page):
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("adapter") == "telegram":
                    name = sample.name.removeprefix(METRICS_PREFIX).removesuffix("_total")
                    counts[name] = sample.value
        return counts

    def logs(self) -> str:
        calls = [
            f"{c.method} {c.status}" for c in self.telegram.calls() if c.method != "getUpdates"
        ]
        return "\n".join([*self.process_logs(), f"--- Telegram saw (getUpdates left out): {calls}"])


async def waited(what: str, gateways: GatewayProcs, awaitable: Any, timeout: float) -> Any:
    """Await with a timeout whose failure carries the gateways' logs."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}\n{gateways.logs()}")


async def until(what: str, gateways: Gateways, condition: Callable[[], Any], timeout: float) -> Any:
    """The condition's truthy value, re-checked whenever the fake Telegram sees a change."""
    return await waited(
        what, gateways, gateways.telegram.wait_for(condition, timeout=timeout), timeout + 1
    )


def run_requests(llm: FakeLLMServer, text: str) -> list[RecordedRequest]:
    """The model calls of runs answering ``text`` (title requests left out)."""
    return [
        r
        for r in llm.requests
        if text in last_user_text(r.json.get("messages") or [])
        and TITLE_PROMPT not in last_user_text(r.json.get("messages") or [])
    ]


def user_texts(request: RecordedRequest) -> list[str]:
    messages = request.json.get("messages") or []
    return [last_user_text([m]) for m in messages if m.get("role") == "user"]


def echoed(llm: FakeLLMServer, text: str) -> str:
    """The echo model's answer to ``text``: the model sees the speaker's name with it."""
    last = run_requests(llm, text)[-1]
    return f"echo: {last_user_text(last.json['messages'])}"
