"""The shared pipeline: gating, dedup, access, bindings, commands, start-or-steer."""

from __future__ import annotations

import asyncio

from gateway.policy import AdapterPolicy, BindingRule
from runtime.history import UserEntry
from runtime.storage.sqlite import SqliteStorage
from tests.fakes.scripted_provider import Gate, Text
from tests.pipeline_helpers import dm, group, rig
from tests.runtime_helpers import wait_for


async def test_a_direct_message_gets_a_streamed_reply() -> None:
    async with rig() as r:
        gate = Gate()
        r.provider.script(Text("Hello "), gate, Text("there"))
        await r.adapter.deliver(dm("hi"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["Hello"])
        await r.adapter.wait_for(lambda: r.adapter.typing_calls)
        gate.release()
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["Hello there"])
        await r.adapter.wait_for(lambda: any(not a for _, _, a in r.adapter.typing_calls))
        assert r.adapter.typing_calls[0][2] is True  # typing shown, then cleared at Done
        assert r.pipeline.metrics.runs.value("mem") == 1
        assert r.pipeline.metrics.first_visible.count("mem") == 1


async def test_bots_and_unaddressed_group_messages_are_ignored() -> None:
    async with rig() as r:
        await r.adapter.deliver(dm("from a bot", from_bot=True))
        await r.adapter.deliver(group("chatter among humans"))
        r.provider.script(Text("yes?"))
        await r.adapter.deliver(group("@bot help me", addressed=True))
        await r.adapter.wait_for(lambda: r.adapter.chat("g1") == ["yes?"])
        assert len(r.provider.requests) == 1
        assert r.pipeline.metrics.messages_in.value("mem") == 1


async def test_respond_all_answers_unaddressed_group_messages() -> None:
    async with rig(policy=AdapterPolicy(name="mem", respond="all", edit_interval=0.05)) as r:
        await r.adapter.deliver(group("anyone?"))
        await r.adapter.wait_for(lambda: r.adapter.chat("g1") == ["ok"])


async def test_duplicates_are_dropped_even_after_a_restart(storage: SqliteStorage) -> None:
    async with rig(storage=storage) as r:
        await r.adapter.deliver(dm("once", message_id="dup-1"))
        await r.adapter.deliver(dm("once", message_id="dup-1"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["ok"])
        assert r.pipeline.metrics.duplicates.value("mem") == 1
    async with rig(storage=storage) as again:
        await again.adapter.deliver(dm("once", message_id="dup-1"))
        await wait_for(lambda: again.pipeline.metrics.duplicates.value("mem") == 1)
        await wait_for(lambda: not again.pipeline.lanes)
        assert again.provider.requests == []


async def test_allowlist_refuses_with_the_users_id_and_lets_listed_users_in() -> None:
    policy = AdapterPolicy(
        name="mem", access="allowlist", allowed_users=frozenset({"7"}), edit_interval=0.05
    )
    async with rig(policy=policy) as r:
        await r.adapter.deliver(dm("let me in", user="42"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42"))
        [refusal] = r.adapter.chat("dm42")
        assert "42" in refusal
        assert "adapters.mem.allowed_users" in refusal
        assert r.provider.requests == []
        await r.adapter.deliver(dm("hello", user="7"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm7") == ["ok"])


async def test_bindings_choose_the_agent_first_match_wins() -> None:
    rules = [
        BindingRule(adapter="other", agent="nobody"),
        BindingRule(adapter="mem", chat="g1", agent="bot"),
    ]
    async with rig(bindings=rules) as r:
        await r.adapter.deliver(group("@bot hi", addressed=True))
        await r.adapter.wait_for(lambda: r.adapter.chat("g1") == ["ok"])


async def test_follow_up_during_a_run_is_acknowledged_and_answered_once() -> None:
    async with rig() as r:
        gate = Gate()
        r.provider.script(Text("first"), gate, Text(" answer"))
        r.provider.script(Text("second answer"))
        await r.adapter.deliver(dm("q1"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        follow = dm("q2")
        await r.adapter.deliver(follow)
        await r.adapter.wait_for(lambda: r.adapter.reactions == [(follow.message_id, "\N{EYES}")])
        gate.release()
        await r.adapter.wait_for(
            lambda: r.adapter.chat("dm42") == ["first answer", "second answer"]
        )
        assert r.pipeline.metrics.steers.value("mem") == 1
        assert len(r.provider.requests) == 2


async def test_an_edited_message_during_a_run_steers_with_its_new_text() -> None:
    async with rig() as r:
        gate = Gate()
        r.provider.script(gate, Text("done"))
        await r.adapter.deliver(dm("original", message_id="e1"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        await r.adapter.deliver(dm("corrected", message_id="e1:edit:1", edited=True))
        gate.release()
        await r.adapter.wait_for(lambda: len(r.provider.requests) == 2)
        users = [e.text for e in r.provider.requests[1].messages if isinstance(e, UserEntry)]
        assert users == ["original", "corrected"]
        # an edit when nothing runs is not a new question
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42")[-1:] == ["ok"])
        await wait_for(lambda: not r.runtime.active_runs())
        await r.adapter.deliver(dm("late fix", message_id="e1:edit:2", edited=True))
        # The chat's lane is FIFO: once /status is answered, the edit was handled.
        await r.adapter.deliver(dm("/status"))
        await r.adapter.wait_for(lambda: "Running: no" in r.adapter.chat("dm42")[-1])
        assert not r.runtime.active_runs()
        assert len(r.provider.requests) == 2


async def test_attachments_the_agent_cannot_see_are_noted_in_the_text() -> None:
    async with rig() as r:
        await r.adapter.deliver(dm("see file", attachment_notes=("report.pdf (application/pdf)",)))
        await r.adapter.wait_for(lambda: r.provider.requests)
        [entry] = r.provider.requests[0].messages
        assert isinstance(entry, UserEntry)
        assert entry.text == "see file\n[attachment: report.pdf (application/pdf)]"


async def test_commands(storage: SqliteStorage) -> None:
    async with rig(storage=storage) as r:

        async def command(text: str) -> str:
            before = len(r.adapter.chat("dm42"))
            await r.adapter.deliver(dm(text))
            await r.adapter.wait_for(lambda: len(r.adapter.chat("dm42")) > before)
            return r.adapter.chat("dm42")[-1]

        assert "/topics" in await command("/help")
        assert "No topic is active" in await command("/topic")
        assert "Switched to topic work" in await command("/topic work")
        await r.adapter.deliver(dm("in work"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42")[-1] == "ok")
        assert "* work" in await command("/topics")
        assert "Title set: Quarterly plan" in await command("/title Quarterly plan")
        # the generated title may have renamed it first; the user's title is the last word
        assert r.adapter.renames[-1] == ("dm42", "Quarterly plan")
        assert "Running: no" in await command("/status")
        assert await command("/stop") == "Nothing is running."
        assert await command("/new") == "Started a new conversation."
        assert "No topic is active" in await command("/topic")
        # Adapters drop commands addressed to other bots; what reaches the pipeline
        # names this bot, and is answered like the bare command.
        assert "/topics" in await command("/help@thisbot")


async def test_stop_command_interrupts_the_running_reply() -> None:
    async with rig() as r:
        gate = Gate()
        r.provider.script(Text("partial"), gate)
        await r.adapter.deliver(dm("long task"))
        await asyncio.wait_for(gate.reached.wait(), 5)
        await r.adapter.deliver(dm("/stop"))
        await r.adapter.wait_for(lambda: "Stopped." in r.adapter.chat("dm42"))
        await r.adapter.wait_for(lambda: "partial\n\n(stopped)" in r.adapter.chat("dm42"))


async def test_persistent_dms_are_saved_topics(storage: SqliteStorage) -> None:
    policy = AdapterPolicy(name="mem", dm_conversation="persistent", edit_interval=0.05)
    async with rig(policy=policy, storage=storage) as r:
        await r.adapter.deliver(dm("remember me"))
        await r.adapter.wait_for(lambda: r.adapter.chat("dm42") == ["ok"])
        [session] = await storage.list_sessions("bot", "mem:user:42")
        assert session.topic_key == "main"


async def test_generated_title_renames_the_thread(storage: SqliteStorage) -> None:
    async with rig(storage=storage) as r:
        r.provider.default_title = "Thread Title"
        await r.adapter.deliver(group("@bot plan the trip", addressed=True, thread="t1"))
        await r.adapter.wait_for(lambda: r.adapter.renames == [("g1", "Thread Title")])
