"""Errors adapters raise, converted from their client library in one place each.

AdapterError                  root
├── CredentialsRejected       the platform refused the credentials for good: not retried
├── ConnectionLost            transient: the supervisor reconnects with backoff
└── DeliveryError             one outbound call failed
    ├── RateLimited           429: ``retry_after`` seconds
    ├── MessageNotModified    an edit with the current text (ignored, never retried)
    ├── MarkupRejected        the platform could not parse the markup: resend as plain
    ├── MessageTooLong        over the platform limit
    └── NotAllowed            e.g. reactions or renames not permitted in that chat
"""

from __future__ import annotations


class AdapterError(Exception):
    pass


class CredentialsRejected(AdapterError):
    """``str(exc)`` names the fix, e.g. which token or portal toggle to change."""


class ConnectionLost(AdapterError):
    pass


class DeliveryError(AdapterError):
    pass


class RateLimited(DeliveryError):
    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"rate limited; retry after {retry_after:g}s")
        self.retry_after = retry_after


class MessageNotModified(DeliveryError):
    pass


class MarkupRejected(DeliveryError):
    pass


class MessageTooLong(DeliveryError):
    pass


class NotAllowed(DeliveryError):
    pass
