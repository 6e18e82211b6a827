"""What a Slack event only points at, fetched for the inbound message: image files
(downloaded with the bot token), speaker names (``users.info``, cached) and whether the
bot owns a channel thread (in memory, and in storage so it survives a restart)."""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.errors import DeliveryError
from adapters.slack.inbound import PLATFORM, SlackFile
from adapters.slack.outbound import api
from runtime.errors import AgentRuntimeError
from runtime.history import Image
from runtime.storage.base import Storage

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024
DOWNLOAD_TIMEOUT = 30.0
_REMEMBERED = 10_000


class Recent:
    """A bounded set of what was seen lately (event ids, message ids, threads)."""

    def __init__(self, size: int = _REMEMBERED) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, item: str) -> bool:
        return item in self._items

    def add(self, item: str) -> bool:
        """False when it was already there."""
        if item in self._items:
            self._items.move_to_end(item)
            return False
        self._items[item] = None
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return True


class ThreadOwnership:
    """Channel threads the bot answers in without a mention (keys ``<channel>:<ts>``)."""

    def __init__(self, storage: Storage | None) -> None:
        self._storage = storage
        self._owned = Recent()

    async def owns(self, key: str) -> bool:
        if key in self._owned:
            return True
        if self._storage is None:
            return False
        try:
            bound = await self._storage.get_binding(PLATFORM, key)
        except AgentRuntimeError as exc:
            log.warning("could not read the Slack thread binding %s: %s", key, exc)
            return False
        if bound is not None:
            self._owned.add(key)
        return bound is not None

    async def claim(self, key: str, scope: str) -> None:
        if not self._owned.add(key) or self._storage is None:
            return
        try:
            await self._storage.bind_thread(PLATFORM, key, scope)
        except AgentRuntimeError as exc:
            log.warning("could not remember the Slack thread %s: %s", key, exc)


class UserNames:
    def __init__(self, client: AsyncWebClient, size: int = _REMEMBERED) -> None:
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
    wanted = [f for f in files if f.is_image and f.size <= MAX_IMAGE_BYTES]
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
