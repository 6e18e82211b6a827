"""The web chat page in a real headless Chromium (playwright) against a real Gateway.

Skipped when playwright or /usr/bin/chromium is missing, unless
AGENT_GATEWAY_REQUIRE_BROWSER=1 (CI), where a missing browser fails the test.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from tests.test_webchat import write_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/webchat.png")


def missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture
def browser_ready() -> None:
    reason = missing_browser()
    if reason is None:
        return
    if os.environ.get("AGENT_GATEWAY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AGENT_GATEWAY_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = load_config(write_config(tmp_path, word_delay=0.03), env={})
    gw = Gateway(config)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def words(count: int, prefix: str) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


async def test_chat_in_a_real_browser(browser_ready: None, gateway: Gateway) -> None:
    from playwright.async_api import async_playwright, expect

    assert gateway.server is not None
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 760})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{gateway.server.url}/")
            await expect(page.locator("#status")).to_have_text("connected")
            await expect(page.locator("#agent option")).to_have_count(2)
            await page.select_option("#agent", "helper")

            box = page.locator("#input")
            assistant = page.locator(".bubble.assistant")
            user = page.locator(".bubble.user")

            # A streamed reply, then the generated title in the header.
            await box.fill("hello there from the browser")
            await box.press("Enter")
            await expect(assistant.last).to_have_text("hello there from the browser")
            await expect(page.locator("#title")).to_have_text("hello there from the browser")

            # A topic: listed in the sidebar, active.
            await box.fill("/topic demo")
            await box.press("Enter")
            await expect(page.locator("#topics li.active .key")).to_have_text("demo")

            # Markdown is rendered; HTML in the text stays text.
            await box.fill("Try **bold** and `code` <img src=x onerror=alert(1)>")
            await box.press("Enter")
            await expect(assistant.last.locator("strong")).to_have_text("bold")
            await expect(assistant.last.locator("code")).to_have_text("code")
            await expect(assistant.last).to_contain_text("<img src=x onerror=alert(1)>")
            assert await page.locator(".bubble img").count() == 0
            await expect(page.locator("#topics li.active .topic-title")).to_have_text(
                "Try **bold** and `code` <img"
            )

            # Steering: a message sent while the reply streams is acked and answered.
            replies = await assistant.count()
            long_text = words(40, "long")
            await box.fill(long_text)
            await box.press("Enter")
            await expect(assistant).to_have_count(replies + 1)
            await expect(page.locator("#typing")).to_be_visible()
            await box.fill("steer this way")
            await box.press("Enter")
            await expect(user.last.locator(".ack")).to_contain_text("\N{EYES}")
            await expect(assistant.filter(has_text=long_text)).to_have_count(1)
            await expect(assistant.last).to_have_text("steer this way")
            await expect(page.locator("#typing")).to_be_hidden()

            # Stop: the long reply ends with "(stopped)".
            before = await assistant.count()
            await box.fill(words(80, "w"))
            await box.press("Enter")
            await expect(assistant).to_have_count(before + 1)
            await page.click("#stop")
            await expect(assistant.nth(before)).to_contain_text("(stopped)")
            await expect(assistant.last).to_have_text("Stopped.")
            await expect(page.locator("#typing")).to_be_hidden()

            await page.screenshot(path=str(SCREENSHOT))
        finally:
            await browser.close()
    assert errors == []
