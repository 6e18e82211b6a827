"""Images a Discord message carries, downloaded when the gateway answers it (in the
message's lane); a failed download becomes a note instead."""

from __future__ import annotations

import base64
import logging
import warnings
from collections.abc import Sequence

import aiohttp

from adapters.discord.inbound import attachment_note
from runtime.history import Image

with warnings.catch_warnings():
    # discord.py imports audioop (deprecated since 3.11) for voice, which is never used here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

log = logging.getLogger(__name__)


async def download(
    wanted: Sequence[discord.Attachment], notes: list[str]
) -> tuple[tuple[Image, ...], list[str]]:
    images: list[Image] = []
    for attachment in wanted:
        try:
            data = await attachment.read()
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("could not download a Discord attachment: %s", type(exc).__name__)
            notes.append(f"{attachment_note(attachment)}, could not be downloaded")
            continue
        media_type = (attachment.content_type or "image/png").split(";")[0].strip()
        encoded = base64.b64encode(data).decode("ascii")
        images.append(Image(media_type=media_type, data_base64=encoded))
    return tuple(images), notes
