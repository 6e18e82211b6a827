"""What a webhook body must look like before python-telegram-bot is trusted with it.

The webhook is a public URL: once the secret token matches, the body is still only as
good as whoever holds the secret (or a proxy that mangled it). ``Update.de_json`` assumes
Telegram's shapes and fails with AttributeError, KeyError, TypeError... on anything
else, and a wrong type that it does accept (a numeric ``text``, a string ``file_size``)
only fails later, inside the conversion. So the fields the conversion reads are checked
here, with strict types, and anything else gets a 400.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from telegram import Bot, Update


class _Shape(BaseModel):
    # Telegram adds fields over time: unknown keys are fine, known ones must be right.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _User(_Shape):
    id: StrictInt
    is_bot: StrictBool
    first_name: StrictStr
    username: StrictStr | None = None


class _Chat(_Shape):
    id: StrictInt
    type: StrictStr
    is_forum: StrictBool | None = None


class _Entity(_Shape):
    type: StrictStr
    offset: StrictInt = Field(ge=0)
    length: StrictInt = Field(ge=0)


class _PhotoSize(_Shape):
    file_id: StrictStr
    file_unique_id: StrictStr
    width: StrictInt
    height: StrictInt
    file_size: StrictInt | None = None


class _Document(_Shape):
    file_id: StrictStr
    file_unique_id: StrictStr
    file_name: StrictStr | None = None
    mime_type: StrictStr | None = None
    file_size: StrictInt | None = None


class _Location(_Shape):
    latitude: StrictFloat | StrictInt
    longitude: StrictFloat | StrictInt


class _Message(_Shape):
    message_id: StrictInt
    date: StrictInt = Field(ge=0)
    chat: _Chat
    from_user: _User | None = Field(None, alias="from")
    text: StrictStr | None = None
    caption: StrictStr | None = None
    entities: list[_Entity] | None = None
    caption_entities: list[_Entity] | None = None
    reply_to_message: _Message | None = None
    message_thread_id: StrictInt | None = None
    is_topic_message: StrictBool | None = None
    edit_date: StrictInt | None = Field(None, ge=0)
    photo: list[_PhotoSize] | None = None
    document: _Document | None = None
    location: _Location | None = None


class _Update(_Shape):
    update_id: StrictInt
    message: _Message | None = None
    edited_message: _Message | None = None


def parse_update(data: Any, bot: Bot) -> Update | None:
    """The update in a webhook body, or None when the body is not a well-formed update."""
    if not isinstance(data, dict):
        return None
    try:
        _Update.model_validate(data)
        # The shapes above cover what the conversion reads; the library parses the rest
        # (stickers, polls, callback queries...) and may still refuse them.
        return Update.de_json(data, bot)
    except (ValidationError, ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None
