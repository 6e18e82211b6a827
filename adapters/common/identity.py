"""Who the bot is on a platform, as its sign-in call reported it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class BotIdentity:
    """What getMe (Telegram), the READY payload (Discord) or auth.test (Slack) said.

    Ids are strings, as everywhere else in the gateway; ``name`` is the handle the bot
    is addressed by (``@name``, ``/command@name``).
    """

    user_id: str
    name: str
    team_id: str = ""  # Slack: the workspace
    bot_id: str = ""  # Slack: the bot's own id, distinct from its user id
    has_topics_enabled: bool = False  # Telegram: topics in private chats
