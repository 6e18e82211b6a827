"""Slash commands in flight, from the deferral to the gateway's answer.

Discord wants an interaction acknowledged within three seconds, so it is deferred
("thinking") on arrival and kept by id; the pipeline's reply then becomes the deferred
response (``answer``). One the gateway does not answer is closed with ``NO_REPLY`` after
``INTERACTION_SILENCE`` rather than left spinning for Discord's fifteen minutes.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Final

from runtime.tasks import TaskSet

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

log = logging.getLogger(__name__)

NO_REPLY: Final = "(no reply)"
INTERACTION_SILENCE: Final = 60.0
"""Seconds after which a slash command the gateway did not answer is closed."""


class Interactions:
    def __init__(self) -> None:
        self._pending: dict[str, discord.Interaction] = {}
        self._closing = TaskSet()

    async def defer(self, interaction: discord.Interaction) -> bool:
        """Acknowledge at once; False when Discord refused (nothing to answer later)."""
        key = str(interaction.id)
        try:
            await interaction.response.defer(thinking=True)
        except discord.HTTPException as exc:
            log.warning("could not acknowledge Discord interaction %s: %s", key, exc)
            return False
        self._pending[key] = interaction
        return True

    def close_later(self, key: str) -> None:
        asyncio.get_running_loop().call_later(INTERACTION_SILENCE, lambda: self.close(key))

    def close(self, key: str) -> None:
        """End the "thinking" state of an interaction still unanswered."""
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._closing.spawn(self._close(key, pending), name="discord-interaction-close")

    async def _close(self, key: str, pending: discord.Interaction) -> None:
        try:
            await pending.edit_original_response(content=NO_REPLY)
        except discord.HTTPException as exc:
            log.debug("could not close Discord interaction %s: %s", key, exc)

    async def answer(self, key: str, text: str) -> str | None:
        """Answer the interaction ``key`` with ``text``: the message id, or None when
        there is none pending (or it expired) and the reply goes to the channel."""
        interaction = self._pending.get(key)
        if interaction is None:
            return None
        # Kept until answered: if this edit fails, the renderer's retry answers it.
        try:
            sent = await interaction.edit_original_response(content=text)
        except discord.NotFound:
            self._pending.pop(key, None)
            log.debug("interaction %s expired; replying in the channel", key)
            return None
        self._pending.pop(key, None)
        return str(sent.id)
