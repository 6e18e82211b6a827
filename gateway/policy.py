"""Per-adapter policy: who may talk (allowlist), when to answer in groups, and which
agent answers (bindings). Pure functions over plain data, built from config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from adapters.base import InboundMessage

_PLATFORM_NAMES = {
    "telegram": "Telegram",
    "discord": "Discord",
    "slack": "Slack",
    "webchat": "web chat",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class AdapterPolicy:
    name: str
    access: Literal["open", "allowlist"] = "open"
    allowed_users: frozenset[str] = frozenset()
    dm_conversation: Literal["tmp", "persistent"] = "tmp"
    respond: Literal["mention", "all"] = "mention"
    agent: str | None = None
    edit_interval: float = 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class BindingRule:
    adapter: str
    agent: str
    chat: str | None = None
    guild: str | None = None
    channel: str | None = None
    team: str | None = None

    def matches(self, adapter: str, match: Mapping[str, str]) -> bool:
        if adapter != self.adapter:
            return False
        wanted = {
            "chat": self.chat,
            "guild": self.guild,
            "channel": self.channel,
            "team": self.team,
        }
        return all(value is None or match.get(key) == value for key, value in wanted.items())


def should_answer(policy: AdapterPolicy, message: InboundMessage) -> bool:
    """Direct messages always; in groups only when addressed, unless respond = "all"."""
    return message.is_direct or message.addressed or policy.respond == "all"


def refusal(policy: AdapterPolicy, message: InboundMessage) -> str | None:
    """The reply to a user the allowlist refuses, naming their id; None when allowed."""
    if policy.access == "open" or message.user_id in policy.allowed_users:
        return None
    platform = _PLATFORM_NAMES.get(policy.name, policy.name)
    return (
        f"Sorry, you are not allowed to use this bot. Your {platform} user id is "
        f"{message.user_id}; ask the operator to add it to "
        f"adapters.{policy.name}.allowed_users."
    )


def resolve_agent(
    rules: Sequence[BindingRule],
    message: InboundMessage,
    policy: AdapterPolicy,
    default_agent: str,
) -> str:
    """First matching binding, else the adapter's agent, else the default agent."""
    for rule in rules:
        if rule.matches(message.platform, message.match):
            return rule.agent
    return policy.agent or default_agent
