"""Background titles: the seed prompt, cleaning, never blocking, never overwriting."""

from __future__ import annotations

import logging

import pytest

from runtime.conversation import Conversation
from runtime.errors import ProviderUnavailableError
from runtime.events import TitleChanged
from runtime.history import UserEntry
from runtime.prompts import TITLE_PROMPT
from runtime.titles import clean_title
from tests.fakes.scripted_provider import Fail, Gate, ScriptedProvider, Text
from tests.runtime_helpers import make_runtime, msg, wait_for, within


class TitleLog:
    def __init__(self) -> None:
        self.events: list[TitleChanged] = []

    def __call__(self, conv: Conversation, event: TitleChanged) -> None:
        self.events.append(event)


async def test_title_request_is_the_seed_prompt_with_first_messages_capped() -> None:
    provider = ScriptedProvider()
    long_question = "q" * 300
    long_answer = "a" * 300
    provider.script(Text(long_answer))
    provider.script_title(Text('"Quick Question About Q."\nextra line'))
    runtime = make_runtime(provider)
    titles = TitleLog()
    runtime.add_title_listener(titles)
    sub = await runtime.submit("bot", "s", msg(long_question))
    await within(sub.run.wait())
    await wait_for(lambda: bool(titles.events))
    [request] = provider.title_requests
    assert request.tools == ()
    assert request.system == ""
    [only] = request.messages
    assert isinstance(only, UserEntry)
    assert only.text == f"{TITLE_PROMPT}\n\nUser: {'q' * 200}\nAssistant: {'a' * 200}"
    assert titles.events == [
        TitleChanged(conversation_id=sub.conversation.id, title="Quick Question About Q")
    ]
    assert sub.conversation.title == "Quick Question About Q"


async def test_title_never_delays_done() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("answer"))
    provider.script_title(gate, Text("Late Title"))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hello"))
    await within(sub.run.wait())
    await within(gate.reached.wait())  # the title request is in flight, Done already out
    assert sub.conversation.title is None
    gate.release()
    await wait_for(lambda: sub.conversation.title == "Late Title")


async def test_a_users_title_set_meanwhile_is_never_overwritten() -> None:
    provider = ScriptedProvider()
    gate = Gate()
    provider.script(Text("answer"))
    provider.script_title(gate, Text("Generated"))
    runtime = make_runtime(provider)
    titles = TitleLog()
    runtime.add_title_listener(titles)
    sub = await runtime.submit("bot", "s", msg("hello"))
    await within(gate.reached.wait())
    assert await runtime.set_title(sub.conversation.id, "  My own title. ") == "My own title"
    gate.release()
    await wait_for(lambda: sub.conversation.title_task is None)
    assert sub.conversation.title == "My own title"
    assert [(e.title, e.source) for e in titles.events] == [("My own title", "user")]
    # and no further attempt after later runs
    again = await runtime.submit("bot", "s", msg("more"))
    await within(again.run.wait())
    assert len(provider.title_requests) == 1


async def test_failed_title_is_logged_at_debug_and_retried_after_the_next_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime")
    provider = ScriptedProvider()
    provider.script_title(Fail(ProviderUnavailableError("down")))
    provider.script_title(Text("Second Try"))
    runtime = make_runtime(provider)
    sub = await runtime.submit("bot", "s", msg("hello"))
    await within(sub.run.wait())
    await wait_for(lambda: len(provider.title_requests) == 1 and not sub.conversation.title_task)
    assert sub.conversation.title is None
    failures = [r for r in caplog.records if "title generation failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.DEBUG]
    again = await runtime.submit("bot", "s", msg("again"))
    await within(again.run.wait())
    await wait_for(lambda: sub.conversation.title == "Second Try")


async def test_empty_title_answer_is_dropped_and_no_title_without_a_reply() -> None:
    provider = ScriptedProvider()
    provider.script()  # no_action: no assistant reply, so no title request at all
    provider.script(Text("answer"))
    provider.script_title(Text('  ""  '))
    runtime = make_runtime(provider)
    titles = TitleLog()
    runtime.add_title_listener(titles)
    sub = await runtime.submit("bot", "s", msg("hello"))
    await within(sub.run.wait())
    assert provider.title_requests == []
    again = await runtime.submit("bot", "s", msg("again"))
    await within(again.run.wait())
    await wait_for(lambda: len(provider.title_requests) == 1 and not sub.conversation.title_task)
    assert titles.events == []
    assert sub.conversation.title is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Trip Planning for Kyoto", "Trip Planning for Kyoto"),
        ('"Trip Planning."', "Trip Planning"),
        ("\u201cSmart quotes\u201d!", "Smart quotes"),
        ("Title: Debugging Rust Lifetimes", "Debugging Rust Lifetimes"),
        ("**Bold Title**", "Bold Title"),
        ("\n\n  First line  \nsecond line", "First line"),
        ("   ", None),
        ("'...'", None),
        ("word " * 30, "word word word word word word word word word word word word"),
        ("x" * 80, "x" * 60),
    ],
)
def test_clean_title(raw: str, clean: str | None) -> None:
    result = clean_title(raw)
    assert result == clean
    assert result is None or len(result) <= 60
