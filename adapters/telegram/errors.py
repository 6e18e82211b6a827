"""The one place python-telegram-bot's exceptions become ``adapters.errors``: a
``BadRequest`` is told apart by its message, a ``RetryAfter`` becomes ``RateLimited``."""

from __future__ import annotations

import datetime as dtm
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from adapters.errors import (
    DeliveryError,
    MarkupRejected,
    MessageNotModified,
    MessageTooLong,
    NotAllowed,
    RateLimited,
)

TOKEN_FIX: Final = (
    "Telegram refused the bot token: set TELEGRAM_BOT_TOKEN (adapters.telegram.token) to "
    "the token @BotFather gave you (and check adapters.telegram.base_url if you changed it)"
)
REFUSALS: Final = (
    ("can't parse entities", MarkupRejected),
    ("message is not modified", MessageNotModified),
    ("topic_not_modified", MessageNotModified),
    ("message is too long", MessageTooLong),
    ("text is too long", MessageTooLong),
    ("not enough rights", NotAllowed),
    ("chat_admin_required", NotAllowed),
    ("reaction_invalid", NotAllowed),
)


def retry_seconds(value: float | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def refusal(exc: BadRequest) -> DeliveryError:
    text = exc.message.lower()
    for needle, kind in REFUSALS:
        if needle in text:
            return kind(exc.message)
    return DeliveryError(exc.message)


@contextmanager
def delivery_errors() -> Iterator[None]:
    """The one place PTB's exceptions become ``adapters.errors``."""
    try:
        yield
    except RetryAfter as exc:
        raise RateLimited(retry_seconds(exc.retry_after)) from exc
    except BadRequest as exc:
        raise refusal(exc) from exc
    except Forbidden as exc:
        raise NotAllowed(exc.message) from exc
    except TelegramError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc.message}") from exc
