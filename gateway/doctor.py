"""`agent-gateway doctor`: try everything the configuration points at, once, and say
what to fix.

Each check is independent and bounded by a timeout; they run concurrently and report in
a fixed order (config, storage, adapters, providers), one `Check` each. A platform's
credentials are tried the way its client library starts (Telegram ``getMe``, Discord
``users/@me``, Slack ``auth.test`` and, in Socket Mode, ``apps.connections.open``); a
model provider gets one tiny streamed request through the gateway's own provider code,
so the failure text is the one the gateway would log. Nothing here prints a secret:
Telegram puts the token in the URL, so transport errors are named by type, not text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.app import build_storage
from gateway.config import (
    AdapterConfig,
    DiscordConfig,
    GatewayConfig,
    ProviderConfig,
    SlackConfig,
    TelegramConfig,
)
from gateway.wiring import build_provider, secret
from runtime.errors import AgentRuntimeError, ProviderError
from runtime.history import UserEntry
from runtime.providers.base import ModelRequest

TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    """One line of the report: ``detail`` says what was found, or what is wrong and the fix."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


class _Refused(Exception):
    """A check's failure, already phrased for the operator."""


async def diagnose(config: GatewayConfig, *, timeout: float = TIMEOUT) -> list[Check]:
    """Run every check concurrently; results in report order."""
    source = config.notes.source
    checks: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("storage", lambda: _storage(config)),
    ]
    for name, section in config.adapters.enabled().items():
        checks.append((name, _adapter_check(section)))
    for provider_name, provider in config.providers.items():
        check = _provider_check(config, provider_name, provider)
        checks.append((f"provider {provider_name}", check))
    results = await asyncio.gather(*(_bounded(n, c, timeout) for n, c in checks))
    where = f"{source} is valid" if source is not None else "valid"
    return [Check(name="config", ok=True, detail=where), *results]


async def _bounded(name: str, check: Callable[[], Awaitable[str]], timeout: float) -> Check:
    try:
        async with asyncio.timeout(timeout):
            return Check(name=name, ok=True, detail=await check())
    except TimeoutError:
        detail = f"no answer within {timeout:g}s; check the network and the configured URL"
        return Check(name=name, ok=False, detail=detail)
    except _Refused as exc:
        return Check(name=name, ok=False, detail=str(exc))


# -- storage ------------------------------------------------------------------------------


async def _storage(config: GatewayConfig) -> str:
    # The same constructor `run` uses, so PostgreSQL and SQLite are tried alike.
    storage = build_storage(config.storage)
    try:
        await storage.open()
    except (AgentRuntimeError, OSError) as exc:
        raise _Refused(str(exc)) from None
    finally:
        await storage.close()
    if config.storage.url is not None:
        return "the PostgreSQL database opens"
    return f"{config.storage.path} opens"


# -- adapters -----------------------------------------------------------------------------


def _adapter_check(section: AdapterConfig) -> Callable[[], Awaitable[str]]:
    if isinstance(section, TelegramConfig):
        return lambda: _telegram(section)
    if isinstance(section, DiscordConfig):
        return lambda: _discord(section)
    if isinstance(section, SlackConfig):
        return lambda: _slack(section)

    async def nothing() -> str:
        return "needs no credentials"

    return nothing


async def _get_json(
    method: str, url: str, *, headers: Mapping[str, str], what: str
) -> tuple[int, dict[str, Any]]:
    """(status, JSON object) of one request; an unreachable host is a `_Refused`."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.request(method, url, headers=dict(headers))
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # The exception text may hold the URL, and Telegram's URL holds the token.
        raise _Refused(f"cannot reach {what} ({type(exc).__name__}); check {what}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body if isinstance(body, dict) else {}


async def _telegram(section: TelegramConfig) -> str:
    token = secret(section.token)
    status, body = await _get_json(
        "GET", f"{section.base_url}{token}/getMe", headers={}, what="adapters.telegram.base_url"
    )
    if status in (401, 404):  # 404: a token Telegram cannot even parse
        raise _Refused(
            f"the bot token was refused (HTTP {status}); set adapters.telegram.token "
            "(TELEGRAM_BOT_TOKEN) to the token @BotFather gave you"
        )
    user = body.get("result")
    if status != 200 or not body.get("ok") or not isinstance(user, dict):
        raise _Refused(f"getMe answered HTTP {status}; check adapters.telegram.base_url")
    return f"signed in as @{user.get('username', '?')}"


async def _discord(section: DiscordConfig) -> str:
    headers = {"Authorization": f"Bot {secret(section.token)}"}
    status, body = await _get_json(
        "GET", f"{section.api_base}/users/@me", headers=headers, what="adapters.discord.api_base"
    )
    if status == 401:
        raise _Refused(
            "the bot token was refused (HTTP 401); set adapters.discord.token "
            "(DISCORD_BOT_TOKEN) to the token on the Bot page of the developer portal"
        )
    if status != 200 or "id" not in body:
        raise _Refused(f"users/@me answered HTTP {status}; check adapters.discord.api_base")
    return f"signed in as {body.get('username', '?')} (id {body['id']})"


async def _slack(section: SlackConfig) -> str:
    bot = await _slack_call(section, "auth.test", secret(section.bot_token), "bot_token")
    found = f"signed in as {bot.get('user', '?')} in team {bot.get('team', '?')}"
    if section.mode == "socket":
        await _slack_call(section, "apps.connections.open", secret(section.app_token), "app_token")
        found += "; the app token opens Socket Mode"
    return found


async def _slack_call(section: SlackConfig, method: str, token: str, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{section.api_url.rstrip('/')}/{method}"
    status, body = await _get_json("POST", url, headers=headers, what="adapters.slack.api_url")
    if body.get("ok") is True:
        return body
    error = body.get("error") or f"HTTP {status}"
    variable = "SLACK_BOT_TOKEN" if key == "bot_token" else "SLACK_APP_TOKEN"
    if error in ("invalid_auth", "not_authed", "not_allowed_token_type", "account_inactive"):
        raise _Refused(
            f"{method} refused adapters.slack.{key} ({error}); set it ({variable}) to the "
            "app's token from api.slack.com/apps"
        )
    raise _Refused(f"{method} failed ({error}); check adapters.slack.api_url")


# -- providers ----------------------------------------------------------------------------


def _provider_check(
    config: GatewayConfig, name: str, provider: ProviderConfig
) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        if provider.kind == "echo":
            return "the offline echo model: nothing to reach"
        users = [agent.model for agent in config.agents.values() if agent.provider == name]
        model = users[0] if users else provider.default_model
        if model is None:
            return "no agent uses it and it has no default_model: not tried"
        await _one_request(config, name, provider, model)
        return f"model {model} answered at {provider.base_url}"

    return check


async def _one_request(
    config: GatewayConfig, name: str, provider: ProviderConfig, model: str
) -> None:
    # No retries: one request is the test; the gateway's own retries would only delay it.
    quick = provider.model_copy(update={"max_retries": 0})
    client = build_provider(name, quick, api_key_source=config.notes.key_sources.get(name))
    request = ModelRequest(
        model=model, system="", messages=[UserEntry(text="Say OK.")], max_tokens=16
    )
    try:
        async for _ in client.stream(request):
            pass
    except ProviderError as exc:
        raise _Refused(str(exc)) from None
    finally:
        await client.aclose()
