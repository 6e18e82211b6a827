"""The web chat page as served: one HTML file from the package, locked down by headers.

Each response gets a fresh nonce, the only thing that lets the page's own script and
style run (``Content-Security-Policy``); the socket may connect only to this host.
"""

from __future__ import annotations

import asyncio
import secrets
from importlib import resources

from aiohttp import web


async def load_page() -> str:
    page = resources.files("adapters.webchat").joinpath("page.html")
    return await asyncio.to_thread(page.read_text, encoding="utf-8")


def page_response(page: str, host: str) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"connect-src 'self' ws://{host} wss://{host}; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    body = page.replace("__NONCE__", nonce)
    return web.Response(text=body, content_type="text/html", headers=headers)
