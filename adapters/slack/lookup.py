"""What a Slack event only points at, fetched for the inbound message: image files
(downloaded with the bot token) and speaker names (``users.info``, cached)."""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.common.memory import REMEMBERED
from adapters.common.sizes import MAX_DOWNLOAD
from adapters.errors import DeliveryError
from adapters.slack.inbound import SlackFile
from adapters.slack.outbound import api
from runtime.history import Image

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30.0


class UserNames:
    def __init__(self, client: AsyncWebClient, size: int = REMEMBERED) -> None:
        self._client = client
        self._names: OrderedDict[str, str] = OrderedDict()
        self._size = size

    async def get(self, user: str) -> str:
        """The display name, else the real name, else the id (lookups that fail are
        retried next time)."""
        if user in self._names:
            return self._names[user]
        try:
            info = (await api(self._client.users_info(user=user)))["user"]
        except DeliveryError as exc:
            log.debug("no name for Slack user %s: %s", user, exc)
            return user
        profile = info.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or info.get("name")
        self._names[user] = str(name or user)
        if len(self._names) > self._size:
            self._names.popitem(last=False)
        return self._names[user]


async def fetch_files(
    files: tuple[SlackFile, ...], bot_token: str
) -> tuple[tuple[Image, ...], tuple[str, ...]]:
    """Images come along, downloaded with the bot token; other files (and images too
    large or that fail to download) become notes the agent can read."""
    wanted = [f for f in files if f.is_image and f.size <= MAX_DOWNLOAD]
    notes = [f.note() for f in files if f not in wanted]
    if not wanted:
        return (), tuple(notes)
    images: list[Image] = []
    headers = {"Authorization": f"Bearer {bot_token}"}
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for file in wanted:
            try:
                async with session.get(file.url) as resp:
                    resp.raise_for_status()
                    data = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("could not download a Slack file: %s", type(exc).__name__)
                notes.append(f"{file.note()}, could not be downloaded")
                continue
            encoded = base64.b64encode(data).decode("ascii")
            images.append(Image(media_type=file.mimetype, data_base64=encoded))
    return tuple(images), tuple(notes)
