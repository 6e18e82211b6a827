"""Images a Telegram message carries, downloaded when the gateway answers it (in the
message's lane); what cannot be read (too large, a failed download) becomes a note."""

from __future__ import annotations

import base64
import logging

from telegram import Bot
from telegram.error import TelegramError

from adapters.base import Media
from adapters.common.sizes import human_size
from adapters.telegram.inbound import Converted
from runtime.history import Image

log = logging.getLogger(__name__)


async def download(bot: Bot, converted: Converted, max_bytes: int) -> Media:
    images: list[Image] = []
    notes = list(converted.message.attachment_notes)
    for item in converted.downloads:
        if item.size is not None and item.size > max_bytes:
            notes.append(f"{item.label} ({item.media_type}, {human_size(item.size)}, too large)")
            continue
        try:
            file = await bot.get_file(item.file_id)
            data = await file.download_as_bytearray()
        except TelegramError as exc:
            log.warning("telegram download of a %s failed: %s", item.media_type, exc)
            notes.append(f"{item.label} ({item.media_type}, could not be downloaded)")
            continue
        encoded = base64.b64encode(bytes(data)).decode("ascii")
        images.append(Image(media_type=item.media_type, data_base64=encoded))
    return tuple(images), tuple(notes)
