"""Who the bot is on Slack and how it calls the Web API: ``auth.test`` at start (team,
bot user and bot ids; a refused token fails for good), bolt's ``authorize`` answered from
that without a second call, and the one way a Web API client is built."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.common.identity import BotIdentity
from adapters.errors import ConnectionLost, CredentialsRejected
from adapters.slack.outbound import CREDENTIAL_ERRORS, ShortRateLimitRetry, SlackNotAllowed, api

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 1  # in-client retries of a short 429 before the budget sees it
BOT_TOKEN_FIX = (
    "Slack refused the bot token ({code}): set SLACK_BOT_TOKEN (adapters.slack.bot_token) "
    "to the app's Bot User OAuth Token (xoxb-...) from OAuth & Permissions."
)


def web_client(api_url: str, token: str | None) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=api_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(),
            ShortRateLimitRetry(max_retry_count=RATE_LIMIT_RETRIES),
        ],
    )


async def authenticate(client: AsyncWebClient, bot_token: str) -> BotIdentity:
    if not bot_token:
        raise CredentialsRejected(BOT_TOKEN_FIX.format(code="empty"))
    try:
        auth = await api(client.auth_test())
    except SlackNotAllowed as exc:
        if exc.code in CREDENTIAL_ERRORS:
            raise CredentialsRejected(BOT_TOKEN_FIX.format(code=exc.code)) from exc
        raise
    identity = BotIdentity(
        user_id=str(auth.get("user_id") or ""),
        name=str(auth.get("user") or ""),
        team_id=str(auth.get("team_id") or ""),
        bot_id=str(auth.get("bot_id") or ""),
    )
    log.info("slack: signed in as %s in team %s", identity.user_id, identity.team_id)
    return identity


def authorizer(
    identity: Callable[[], BotIdentity | None], bot_token: str
) -> Callable[[], Awaitable[AuthorizeResult]]:
    """bolt's ``authorize``, from the identity ``authenticate`` found. A plain function:
    bolt passes arguments by parameter name and would take a bound method's ``self``
    for one of its own."""

    async def authorize() -> AuthorizeResult:
        me = identity()
        if me is None:
            raise ConnectionLost("an event arrived before the Slack adapter signed in")
        return AuthorizeResult(
            enterprise_id=None,
            team_id=me.team_id,
            bot_user_id=me.user_id,
            bot_id=me.bot_id,
            bot_token=bot_token,
        )

    return authorize
