"""Why a model call failed, as one typed ``ProviderError`` per cause.

Every failure is converted here and nowhere else: an HTTP status (with the API's error
JSON), an httpx transport exception, or a ``StreamBroken`` from a parser. A failure
worth retrying becomes a ``Failure`` for the retry loop, and ``exhausted`` turns the
last one into the error when the retries run out. Each error gets its log detail, the
user's sentence (the class default, or one naming the model) and the operator's hint,
which names the setting actually in use (``OPENAI_API_KEY`` when the key came from
the environment, ``providers.NAME.api_key`` when it was written in the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from runtime.errors import (
    ProviderAuthError,
    ProviderContextError,
    ProviderError,
    ProviderModelError,
    ProviderRateLimitedError,
    ProviderRequestError,
    ProviderServerError,
    ProviderStreamError,
    ProviderUnreachableError,
)
from runtime.providers.base import RetryCause
from runtime.providers.body import StreamBroken, clip

if TYPE_CHECKING:
    from runtime.providers.http_retry import StreamCall

# Error codes (OpenAI ``error.code``) and types (Anthropic ``error.type``) that mean
# "no such model" even when the status is 400 rather than 404.
_MODEL_NOT_FOUND = frozenset({"model_not_found", "not_found_error"})
# How servers say "the prompt is too long": OpenAI's code, Anthropic's and the usual
# compatible servers' (vLLM, llama.cpp, LiteLLM) messages.
_CONTEXT_CODES = frozenset({"context_length_exceeded", "request_too_large"})
_CONTEXT_PHRASES = ("context length", "context window", "prompt is too long", "too many tokens")


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """One failed attempt that is worth retrying."""

    cause: RetryCause
    detail: str
    retry_after: float | None = None
    exc: BaseException | None = None


def status_failure(call: StreamCall, resp: httpx.Response) -> Failure:
    """Map a non-200 answer: 429 and 5xx are retried, everything else raises."""
    status = resp.status_code
    message, code = _error_fields(resp)
    detail = f"HTTP {status}: {message}"
    if status == 429:
        return Failure(cause="rate_limited", detail=detail, retry_after=_retry_after(resp))
    if status >= 500:
        return Failure(cause="server_error", detail=detail, retry_after=_retry_after(resp))
    name = call.provider
    if status in (401, 403):
        raise ProviderAuthError(
            f"The provider '{name}' refused the API key (HTTP {status}); check {call.key_source}.",
            hint=f"Set a valid API key in {call.key_source} (provider '{name}' answered "
            f"HTTP {status}: {message}), then restart the gateway.",
        )
    if status == 404 or code in _MODEL_NOT_FOUND:
        raise ProviderModelError(
            f"The provider '{name}' does not know the model '{call.model}' "
            f"({detail}); check the agent's model and providers.{name}.base_url.",
            user_message=f"I can't answer: the model '{call.model}' is not available.",
            hint=f"Set the agent's model to one that {call.base_url} serves ({detail}).",
        )
    if status == 413 or code in _CONTEXT_CODES or _says_too_long(message):
        raise ProviderContextError(
            f"The provider '{name}' refused the prompt as too long ({detail}).",
            hint="Set compact_threshold on the agent so long conversations are "
            f"summarised before they reach the model's limit ({detail}).",
        )
    raise ProviderRequestError(
        f"The provider '{name}' rejected the request (HTTP {status}): {message}",
        hint=f"The provider '{name}' said: {detail}.",
    )


def transport_failure(
    call: StreamCall, exc: httpx.HTTPError | httpx.InvalidURL, *, started: bool
) -> Failure:
    detail = describe(exc)
    if started:
        raise broke_off(call, detail) from exc
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        raise ProviderUnreachableError(
            f"The provider '{call.provider}' has an unusable URL {call.url!r} ({detail}); "
            f"check providers.{call.provider}.base_url.",
            hint=f"Set providers.{call.provider}.base_url to an http(s) URL ({detail}).",
        ) from exc
    return Failure(cause="unreachable", detail=detail, exc=exc)


def broken_failure(call: StreamCall, exc: StreamBroken, *, started: bool) -> Failure:
    if started:
        raise broke_off(call, exc.detail) from exc
    if not exc.retryable:
        raise ProviderStreamError(
            f"The provider '{call.provider}' sent a broken stream before the reply "
            f"started: {exc.detail}.",
            hint=f"The server at {call.base_url} sent a broken answer: {exc.detail}.",
        ) from exc
    cause: RetryCause = "server_error" if exc.overloaded else "stream_broken"
    return Failure(cause=cause, detail=exc.detail, exc=exc)


def broke_off(call: StreamCall, detail: str) -> ProviderStreamError:
    return ProviderStreamError(
        f"The model stream broke off after the reply started: {detail} "
        f"(provider '{call.provider}').",
        hint=f"The stream from {call.base_url} broke off: {detail}.",
    )


def exhausted(call: StreamCall, failure: Failure, attempts: int) -> ProviderError:
    """The error once the retries have run out, typed by the last failure's cause."""
    name = call.provider
    detail = (
        f"The provider '{name}' is unavailable ({failure.detail}), still after {attempts} "
        "attempts; "
    )
    match failure.cause:
        case "unreachable":
            return ProviderUnreachableError(
                detail + f"try again later or check providers.{name}.base_url.",
                hint=f"Start the model server at {call.base_url} or correct "
                f"providers.{name}.base_url ({failure.detail}).",
            )
        case "rate_limited":
            return ProviderRateLimitedError(
                detail + f"the key in {call.key_source} may have hit its rate limit or quota.",
                hint=f"The key in {call.key_source} hit a rate limit or quota; check the "
                "provider account's usage and plan.",
            )
        case "server_error":
            return ProviderServerError(
                detail + "the provider's servers are failing; try again later.",
                hint=f"{call.base_url} kept failing ({failure.detail}); check the "
                "provider's status page.",
            )
        case "stream_broken":
            return ProviderStreamError(
                detail + f"check what answers at providers.{name}.base_url.",
                hint=f"The server at {call.base_url} keeps sending broken streams "
                f"({failure.detail}).",
            )


def _says_too_long(message: str) -> bool:
    lowered = message.lower()
    return any(phrase in lowered for phrase in _CONTEXT_PHRASES)


def _error_fields(resp: httpx.Response) -> tuple[str, str | None]:
    """The server's error message and its code (OpenAI) or type (Anthropic)."""
    try:
        body = resp.json()
    except ValueError:
        return clip(resp.text) or resp.reason_phrase or "no details", None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return clip(resp.text), None
    message = str(error.get("message") or "no details")
    code = error.get("code") or error.get("type")
    return clip(message), code if isinstance(code, str) else None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {clip(text)}" if text else type(exc).__name__
