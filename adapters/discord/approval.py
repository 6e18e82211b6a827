"""Approval requests on Discord: Approve / Deny buttons (message components) under the
question; a press is an interaction answered with an ephemeral line for the presser."""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord

from adapters.approval import ApprovalDecision, DecisionSink, encode_action
from adapters.base import InboundSink

log = logging.getLogger(__name__)

NOT_RUNNING = "The bot is not ready; try again in a moment."
PLATFORM = "discord"


class ApprovalView(discord.ui.View):
    """Kept by discord.py's view store for the message's life in this process (a
    request does not outlive the process either)."""

    def __init__(self, request_id: str, sink: Callable[[], InboundSink | None]) -> None:
        super().__init__(timeout=None)
        self.add_item(_DecisionButton(request_id, True, sink))
        self.add_item(_DecisionButton(request_id, False, sink))


class _DecisionButton(discord.ui.Button[ApprovalView]):
    def __init__(
        self, request_id: str, approved: bool, sink: Callable[[], InboundSink | None]
    ) -> None:
        super().__init__(
            label="Approve" if approved else "Deny",
            style=discord.ButtonStyle.success if approved else discord.ButtonStyle.danger,
            custom_id=encode_action(request_id, approved),
        )
        self._request_id = request_id
        self._approved = approved
        self._sink = sink

    async def callback(self, interaction: discord.Interaction) -> None:
        sink = self._sink()
        if isinstance(sink, DecisionSink):
            decision = ApprovalDecision(
                platform=PLATFORM,
                request_id=self._request_id,
                approved=self._approved,
                user_id=str(interaction.user.id),
                user_name=interaction.user.display_name,
            )
            text = await sink.decide(decision)
        else:
            text = NOT_RUNNING
        try:
            await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException as exc:  # expired (3 s): the decision stands
            log.info("could not answer Discord button press: %s", exc)
