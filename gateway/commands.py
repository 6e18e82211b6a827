"""Chat commands shared by every adapter: /new /topic /topics /title /stop /status
/compact /help (and /start, Telegram's greeting)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.base import InboundMessage
from adapters.common.commands import COMMANDS, is_command_name
from gateway.policy import AdapterPolicy
from gateway.tools_command import tools_text
from runtime.agent_runtime import AgentRuntime
from runtime.errors import AgentRuntimeError

_COMMAND = re.compile(r"^/([A-Za-z_]+)(?:@(\S+))?(?:\s+(.*))?$", re.DOTALL)


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    name: str
    arg: str
    addressee: str | None  # the bot named in /cmd@bot, if any


def parse_command(text: str) -> Command | None:
    """A known command at the start of the message, or None (text for the agent)."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name = match.group(1).lower()
    if not is_command_name(name):
        return None
    return Command(name=name, arg=(match.group(3) or "").strip(), addressee=match.group(2))


def help_text() -> str:
    lines = ["Talk to me in plain text. Commands:"]
    lines += [f"/{name} - {info.help}" for name, info in COMMANDS.items()]
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandContext:
    agent: str
    message: InboundMessage
    policy: AdapterPolicy
    rename: Callable[[str, str], Awaitable[None]]  # (conversation id, title)


class CommandHandler:
    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    async def handle(self, command: Command, ctx: CommandContext) -> str:
        handler = getattr(self, f"_cmd_{command.name}")
        try:
            reply: str = await handler(command.arg, ctx)
        except AgentRuntimeError as exc:
            return str(exc)
        return reply

    async def _cmd_start(self, arg: str, ctx: CommandContext) -> str:
        return f"Hello! I am {ctx.agent}.\n{help_text()}"

    async def _cmd_help(self, arg: str, ctx: CommandContext) -> str:
        return help_text()

    async def _cmd_new(self, arg: str, ctx: CommandContext) -> str:
        msg = ctx.message
        if msg.topic is not None:
            return "This thread is its own conversation; start a new thread for a fresh one."
        await self._runtime.new(ctx.agent, msg.scope)
        if msg.is_direct and ctx.policy.dm_conversation == "persistent":
            key = time.strftime("chat-%Y%m%d-%H%M%S")
            await self._runtime.switch_topic(ctx.agent, msg.scope, key)
        return "Started a new conversation."

    async def _cmd_topic(self, arg: str, ctx: CommandContext) -> str:
        msg = ctx.message
        if msg.topic is not None:
            return "This thread is already its own topic."
        if not arg:
            conv = await self._runtime.conversation_for(ctx.agent, msg.scope)
            if conv.topic_key is None:
                return "No topic is active (scratch conversation). Use /topic NAME to start one."
            return f"Current topic: {conv.topic_key}" + (f" ({conv.title})" if conv.title else "")
        key = arg[:64]
        conv = await self._runtime.switch_topic(ctx.agent, msg.scope, key)
        resumed = " (resumed)" if conv.history else ""
        return f"Switched to topic {key}{resumed}. Your next message goes there."

    async def _cmd_topics(self, arg: str, ctx: CommandContext) -> str:
        topics = await self._runtime.topics(ctx.agent, ctx.message.scope)
        if not topics:
            return "No saved topics yet. Use /topic NAME to start one."
        lines = ["Your topics:"]
        for topic in topics[:30]:
            mark = "* " if topic.active else "- "
            lines.append(mark + topic.key + (f" - {topic.title}" if topic.title else ""))
        return "\n".join(lines)

    async def _cmd_title(self, arg: str, ctx: CommandContext) -> str:
        conv = await self._runtime.conversation_for(
            ctx.agent, ctx.message.scope, topic=ctx.message.topic
        )
        if not arg:
            return f"Title: {conv.title}" if conv.title else "This conversation has no title yet."
        title = await self._runtime.set_title(conv.id, arg)
        await ctx.rename(conv.id, title)
        return f"Title set: {title}"

    async def _cmd_stop(self, arg: str, ctx: CommandContext) -> str:
        conv = self._runtime.router.current(ctx.agent, ctx.message.scope)
        if conv is None or not self._runtime.stop(conv):
            return "Nothing is running."
        return "Stopped."

    async def _cmd_status(self, arg: str, ctx: CommandContext) -> str:
        conv = await self._runtime.conversation_for(
            ctx.agent, ctx.message.scope, topic=ctx.message.topic
        )
        st = await self._runtime.status(conv)
        where = f"topic {st.topic_key}" if st.topic_key else "scratch conversation"
        lines = [
            f"Agent: {st.agent} (model {st.model})",
            f"Conversation: {where}" + (f", titled {st.title}" if st.title else ""),
            f"Running: {'yes' if st.running else 'no'}, queued messages: {st.queued}",
            f"Entries: {st.entries}; tokens: {st.prompt_tokens} prompt, "
            f"{st.completion_tokens} completion (last prompt {st.last_prompt_tokens})",
        ]
        return "\n".join(lines)

    async def _cmd_tools(self, arg: str, ctx: CommandContext) -> str:
        return tools_text(self._runtime.agents.get(ctx.agent))

    async def _cmd_compact(self, arg: str, ctx: CommandContext) -> str:
        conv = await self._runtime.conversation_for(
            ctx.agent, ctx.message.scope, topic=ctx.message.topic
        )
        result = await self._runtime.compact(conv.id)
        if result.status == "compacted":
            return (
                f"Compacted: {result.summarised_entries} older entries summarised, "
                f"{result.retained_entries} kept."
            )
        return result.detail
