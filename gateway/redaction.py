"""Secrets never reach a log line, whoever logs them.

Client libraries log URLs (Telegram's carry the bot token) and exceptions quote them.
A log-record factory replaces every configured secret in the message, its arguments and
any exception text with ``[redacted]`` at the moment the record is made, so every
handler, including test capture, sees the redacted form.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from typing import Any

_SECRETS: set[str] = set()
_installed = False
_base_factory = logging.getLogRecordFactory()
MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    if not _SECRETS:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to the handler to report
        return record
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    return record


def install_redaction(secrets: Iterable[str]) -> None:
    global _installed
    _SECRETS.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
    if not _installed:
        logging.setLogRecordFactory(_factory)
        _installed = True
