"""Slack in HTTP mode served by two gateway replicas on one PostgreSQL database (issue 12).

Two real `agent-gateway run` processes share a PostgreSQL database started by the tests and
the fake Slack; Slack's request URL may point at either replica, so the test posts each
signed event to the replica it chooses, as a load balancer would. The direct messages of
one user go alternately to both: one run at a time (a message reaching the other replica
is steered into the running turn on the owner, with an "eyes" reaction), FIFO, each
answered once. A Slack retry (the same event_id, ``X-Slack-Retry-Num``) sent to the other
replica is dropped: the replicas' in-memory event ids differ, the durable inbox is shared.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLLMServer, Script, Text
from tests.fakes.slack_api import FakeSlack, SlackMessage
from tests.gateway_procs import (
    STEP_TIMEOUT,
    TITLE_PROMPT,
    GatewayProcs,
    child_env,
    user_texts,
    waited,
)

pytestmark = pytest.mark.postgres

SECRET = "replica-slack-signing-secret"
DM = "D0REPLICA01"
USER = "U0REPLICA01"
CONFIG = """
default_agent = "bot"
shutdown_grace = 1.0
[server]
host = "127.0.0.1"
port = 0
[storage]
url = {url}
[providers.llm]
kind = "openai"
base_url = {llm}
api_key = "${{OPENAI_API_KEY}}"
max_retries = 0
[agents.bot]
provider = "llm"
model = "fake-model"
tools = []
[adapters.slack]
mode = "http"
bot_token = "${{SLACK_BOT_TOKEN}}"
signing_secret = "${{SLACK_SIGNING_SECRET}}"
api_url = {api_url}
edit_interval = 0.1
"""


@dataclass(slots=True, kw_only=True)
class SlackGateways(GatewayProcs):
    """Gateways whose platform is the fake Slack, its events posted over HTTP."""

    slack: FakeSlack

    def logs(self) -> str:
        calls = [f"{c.method} {c.status}" for c in self.slack.calls]
        return "\n".join([*self.process_logs(), f"--- Slack saw: {calls}"])

    async def post(
        self, n: int, event: dict[str, Any], *, event_id: str, retry: int | None = None
    ) -> None:
        """The event, signed and posted to replica ``n``'s request URL; Slack's ack."""
        status, body = await self.slack.deliver_http(
            f"{self.url(n)}/slack/events",
            event,
            signing_secret=SECRET,
            retry_num=retry,
            event_id=event_id,
        )
        assert status == 200, (status, body, self.logs())

    async def until(self, what: str, condition: Any, timeout: float = STEP_TIMEOUT) -> Any:
        """The condition's truthy value, re-checked whenever the fake Slack sees a change."""
        return await waited(what, self, self.slack.wait_for(condition, timeout), timeout + 1)

    def answers(self) -> list[SlackMessage]:
        """The bot's finished replies in the direct message, oldest first."""
        return [m for m in self.slack.bot_messages(DM) if not m.streaming]

    async def answered(self, text: str) -> None:
        """Until the echo model's reply to ``text`` is posted in full."""
        expected = echo(text)
        await self.until(
            f"the answer to {text!r}", lambda: expected in [m.text for m in self.answers()]
        )

    def eyes_on(self, ts: str) -> bool:
        reactions = self.slack.messages[(DM, ts)].reactions
        return ("eyes", self.slack.bot_user_id) in reactions


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user(USER, name="alice", real_name="Alice")
        yield fake


@pytest.fixture
async def replicas(
    tmp_path: Path, slack: FakeSlack, llm_server: FakeLLMServer, postgres_url: str
) -> AsyncIterator[SlackGateways]:
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG.format(
            url=json.dumps(postgres_url),
            llm=json.dumps(f"{llm_server.url}/v1"),
            api_url=json.dumps(slack.api_url),
        ),
        encoding="utf-8",
    )
    env = child_env(
        SLACK_BOT_TOKEN=slack.bot_token, SLACK_SIGNING_SECRET=SECRET, OPENAI_API_KEY="sk-fake"
    )
    running = SlackGateways(directory=tmp_path, config=config, env=env, slack=slack, llm=llm_server)
    async with running.replicas(2):
        yield running


def said(text: str) -> str:
    """The user's words as the model sees them: a direct message carries no name lookup,
    so the speaker is the Slack user id."""
    return f"[{USER}] {text}"


def echo(text: str) -> str:
    """The fake model's default reply (no script queued) to ``text``."""
    return f"echo: {said(text)}"


def asked(llm: FakeLLMServer) -> list[list[str]]:
    """The user texts of each run's model call, in arrival order (title requests left out)."""
    calls = [r for r in llm.requests if TITLE_PROMPT not in str(r.json)]
    return [user_texts(c) for c in calls]


async def test_one_dm_across_two_replicas_runs_once_in_order(
    replicas: SlackGateways, slack: FakeSlack, llm_server: FakeLLMServer
) -> None:
    held = asyncio.Event()
    llm_server.script(Script(steps=[Text("first part")], gate=held))
    await replicas.post(1, slack.message_event(DM, USER, "one"), event_id="Ev0ONE")
    await waited("the first run", replicas, llm_server.wait_for_requests(1, STEP_TIMEOUT), 40)
    steer = slack.message_event(DM, USER, "two")
    await replicas.post(2, steer, event_id="Ev0TWO")  # the other replica took it
    # The owner steered it into the running turn: the eyes reaction, and no second run.
    await replicas.until("the steering acknowledgement", lambda: replicas.eyes_on(steer["ts"]))
    assert len(llm_server.requests) == 1, replicas.logs()
    held.set()
    await replicas.answered("two")
    for n, text in ((2, "three"), (1, "four"), (2, "five")):
        await replicas.post(n, slack.message_event(DM, USER, text), event_id=f"Ev0{text.upper()}")
        await replicas.answered(text)

    # One run at a time, FIFO: each model call ends with the next message, and the
    # steered one was taken into the first run, not a run of its own.
    runs = asked(llm_server)
    assert [texts[-1] for texts in runs] == [
        said(t) for t in ("one", "two", "three", "four", "five")
    ], replicas.logs()
    assert runs[1][-2:] == [said("one"), said("two")]
    assert [m.text for m in replicas.answers()] == [
        "first part",
        *(echo(t) for t in ("two", "three", "four", "five")),
    ], replicas.logs()


async def test_a_retry_at_the_other_replica_is_dropped(
    replicas: SlackGateways, slack: FakeSlack, llm_server: FakeLLMServer
) -> None:
    held = asyncio.Event()
    llm_server.script(Script(steps=[Text("on it")], gate=held))
    first = slack.message_event(DM, USER, "only once")
    await replicas.post(1, first, event_id="Ev0ONCE")
    await waited("the first run", replicas, llm_server.wait_for_requests(1, STEP_TIMEOUT), 40)
    # Slack gave up waiting (say) and retries at the other replica while the run goes on.
    await replicas.post(2, first, event_id="Ev0ONCE", retry=1)
    held.set()
    await replicas.until("the answer", lambda: "on it" in [m.text for m in replicas.answers()])
    # And a retry of an answered message, at a replica that never saw its event id.
    later = slack.message_event(DM, USER, "later")
    await replicas.post(1, later, event_id="Ev0LATER")
    await replicas.answered("later")
    await replicas.post(2, later, event_id="Ev0LATER", retry=1)
    # A last message goes through the same conversation's FIFO: had a retry been taken,
    # its run (or steering) would show in the model calls before this one's.
    await replicas.post(2, slack.message_event(DM, USER, "last"), event_id="Ev0LAST")
    await replicas.answered("last")
    assert asked(llm_server) == [
        [said("only once")],
        [said("only once"), said("later")],
        [said("only once"), said("later"), said("last")],
    ], replicas.logs()
    assert not replicas.eyes_on(first["ts"])  # not taken as steering either
    assert [m.text for m in replicas.answers()] == ["on it", echo("later"), echo("last")]
    # Both were caught by the shared inbox, not by replica 2's memory of event ids.
    log = (replicas.directory / "gateway-2.log").read_text()
    assert log.count("dropped a duplicate slack message") == 2, replicas.logs()
