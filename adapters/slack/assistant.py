"""Slack's assistant threads: the greeting, the "is thinking..." status and the title.

An assistant thread (the app's own pane) has a status line under it that a bot may set
while it works, and a title; channel threads have neither. Slack clears the status when
a reply appears, so ``Assistant`` remembers, per thread with a run going, whether the
status still shows, and does not set it again until that run ends.
"""

from __future__ import annotations

import logging

from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import ChatTarget
from adapters.errors import DeliveryError
from adapters.slack.inbound import thread_key
from adapters.slack.outbound import api

log = logging.getLogger(__name__)

DEFAULT_GREETING = "Hi! How can I help?"
THINKING = "is thinking..."


async def greet(
    say: AsyncSay,
    set_prompts: AsyncSetSuggestedPrompts,
    greeting: str,
    suggested_prompts: tuple[tuple[str, str], ...],
) -> None:
    """Open a new assistant thread with the greeting and the suggested prompts."""
    try:
        await api(say(text=greeting))
        if suggested_prompts:
            prompts = [{"title": t, "message": m} for t, m in suggested_prompts]
            await api(set_prompts(prompts=prompts))
    except DeliveryError as exc:
        log.warning("could not greet in a new Slack assistant thread: %s", exc)


class Assistant:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        # Threads with a run going: True while "is thinking..." shows, False once a
        # reply appeared (Slack clears the status then).
        self._status: dict[str, bool] = {}

    async def typing(self, target: ChatTarget, active: bool) -> None:
        key = assistant_thread(target)
        if key is None or target.thread_id is None:
            return
        if active:
            if self._status.get(key) is False:
                return
            self._status[key] = True
        else:
            self._status.pop(key, None)
        await api(
            self._client.assistant_threads_setStatus(
                channel_id=target.chat_id,
                thread_ts=target.thread_id,
                status=THINKING if active else "",
            )
        )

    def replied(self, target: ChatTarget) -> None:
        """A reply appeared in the thread, so Slack has cleared the status."""
        key = assistant_thread(target)
        if key is not None and key in self._status:
            self._status[key] = False

    async def rename(self, target: ChatTarget, title: str) -> None:
        if assistant_thread(target) is None or target.thread_id is None:
            return  # channel threads have no title to set
        await api(
            self._client.assistant_threads_setTitle(
                channel_id=target.chat_id, thread_ts=target.thread_id, title=title
            )
        )


def assistant_thread(target: ChatTarget) -> str | None:
    if target.extra.get("assistant") != "1" or target.thread_id is None:
        return None
    return thread_key(target.chat_id, target.thread_id)
