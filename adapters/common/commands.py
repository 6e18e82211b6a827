"""The chat command catalog: one list for the gateway's handler and every platform's
command menu (Telegram's menu, Discord's slash commands, Slack's sub-commands)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandInfo:
    summary: str  # a short line for platform menus
    help: str  # the longer line /help prints
    argument: str | None = None  # what the optional argument is, for slash-command forms


COMMANDS: Final[Mapping[str, CommandInfo]] = {
    "new": CommandInfo(summary="Start a fresh conversation", help="start a fresh conversation"),
    "topic": CommandInfo(
        summary="Switch to a saved topic, or show the current one",
        help="/topic NAME switches to a saved topic (created if new); /topic shows the current one",
        argument="the topic's name",
    ),
    "topics": CommandInfo(summary="List your saved topics", help="list your saved topics"),
    "title": CommandInfo(
        summary="Show or set this conversation's title",
        help="/title TEXT renames this conversation; /title shows it",
        argument="the new title",
    ),
    "stop": CommandInfo(summary="Stop the reply in progress", help="stop the reply in progress"),
    "status": CommandInfo(
        summary="Agent, model, topic and token use", help="agent, model, topic and token use"
    ),
    "compact": CommandInfo(
        summary="Summarise older turns to free context",
        help="summarise older turns to free context",
    ),
    "tools": CommandInfo(
        summary="List the tools the agent can use now",
        help="the tools the agent can use now, and its tool servers",
    ),
    "help": CommandInfo(summary="List the commands", help="this list"),
}
# Telegram's greeting command: understood everywhere, listed in no menu.
GREETING: Final = "start"


def is_command_name(name: str) -> bool:
    """A command the gateway answers (the greeting included)."""
    return name.lower() in COMMANDS or name.lower() == GREETING
