"""The platforms' public endpoints: the defaults of the adapters' settings and of the
gateway's config schema, defined here once (tests point both at local fakes)."""

from __future__ import annotations

from typing import Final

TELEGRAM_BASE_URL: Final = "https://api.telegram.org/bot"
TELEGRAM_BASE_FILE_URL: Final = "https://api.telegram.org/file/bot"
DISCORD_API_BASE: Final = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL: Final = "wss://gateway.discord.gg"
SLACK_API_URL: Final = "https://slack.com/api/"
