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


# Records every change of the "Replying" indicator with the newest reply's text, so the
# test can tell whether it went off while a reply was still streaming.
WATCH_TYPING = """() => {
  window.typingLog = [];
  const typing = document.getElementById("typing");
  new MutationObserver(() => {
    const replies = document.querySelectorAll(".bubble.assistant");
    const last = replies.length ? replies[replies.length - 1].textContent.trim() : "";
    window.typingLog.push({ hidden: typing.hidden, last: last });
  }).observe(typing, { attributes: true, attributeFilter: ["hidden"] });
}"""

MARKDOWN = "# Plan\n\n- first item\n- second item\n\n> a quote\n\n| a | b |\n|---|---|\n| 1 | 2 |"


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

            # The empty page greets: which agent, that it is the echo model, the fix, /help.
            greeting = page.locator(".bubble.greeting")
            await expect(greeting).to_contain_text("assistant answers here")
            await expect(greeting).to_contain_text("offline echo model")
            await expect(greeting).to_contain_text("OPENAI_API_KEY")
            await expect(greeting.locator("code", has_text="/help")).to_have_count(1)
            await expect(page.locator("#model")).to_have_text("echo model (offline)")
            await expect(page.locator("#stop")).to_be_disabled()
            await page.select_option("#agent", "helper")
            await expect(greeting).to_contain_text("helper answers here")

            box = page.locator("#input")
            assistant = page.locator(".bubble.assistant")
            user = page.locator(".bubble.user")

            # A streamed reply, then the generated title in the header.
            await box.fill("hello there from the browser")
            await box.press("Enter")
            await expect(assistant.last).to_have_text("hello there from the browser")
            await expect(page.locator("#title")).to_have_text("hello there from the browser")

            # A reload shows the conversation again, served from the runtime.
            await page.reload()
            await expect(page.locator("#status")).to_have_text("connected")
            await expect(user).to_have_text(["hello there from the browser"])
            await expect(assistant).to_have_text(["hello there from the browser"])
            await expect(page.locator("#title")).to_have_text("hello there from the browser")
            await expect(greeting).to_have_count(0)

            # A topic: listed in the sidebar, active, empty; the scratch chat is kept.
            await box.fill("/topic demo")
            await box.press("Enter")
            await expect(page.locator("#topics li.active .key")).to_have_text("demo")
            await expect(greeting).to_have_count(1)
            await expect(user).to_have_count(0)
            await expect(page.locator(".bubble.system")).to_contain_text("kept as the topic chat-")
            kept = page.locator("#topics li:not(.active) .topic-title")
            await expect(kept).to_have_text("hello there from the browser")

            # Markdown is rendered: headings, lists, quotes, tables.
            await box.fill(MARKDOWN)
            await box.press("Enter")
            await expect(assistant.last.locator("h1")).to_have_text("Plan")
            await expect(assistant.last.locator("li")).to_have_text(["first item", "second item"])
            await expect(assistant.last.locator("blockquote")).to_have_text("a quote")
            await expect(assistant.last.locator("td")).to_have_text(["1", "2"])

            # Inline markdown too; HTML in the text stays text.
            await box.fill("Try **bold** and `code` <img src=x onerror=alert(1)>")
            await box.press("Enter")
            await expect(assistant.last.locator("strong")).to_have_text("bold")
            await expect(assistant.last.locator("code")).to_have_text("code")
            await expect(assistant.last).to_contain_text("<img src=x onerror=alert(1)>")
            assert await page.locator(".bubble img").count() == 0

            # Steering: a message sent while the reply streams is acked and answered, and
            # "Replying" and Stop stay on until the steered reply has finished.
            await expect(page.locator("#typing")).to_be_hidden()
            await page.evaluate(WATCH_TYPING)
            replies = await assistant.count()
            long_text = words(40, "long")
            await box.fill(long_text)
            await box.press("Enter")
            await expect(assistant).to_have_count(replies + 1)
            await expect(page.locator("#typing")).to_be_visible()
            await expect(page.locator("#stop")).to_be_enabled()
            await box.fill("steer this way")
            await box.press("Enter")
            await expect(user.last.locator(".ack")).to_contain_text("\N{EYES}")
            await expect(assistant.filter(has_text=long_text)).to_have_count(1)
            await expect(assistant.last).to_have_text("steer this way")
            await expect(page.locator("#typing")).to_be_hidden()
            await expect(page.locator("#stop")).to_be_disabled()
            log = await page.evaluate("window.typingLog")
            hidden = [entry for entry in log if entry["hidden"]]
            assert hidden == [{"hidden": True, "last": "steer this way"}], log

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

            # + New chat empties the page; clicking the topic shows its messages again.
            await page.click("#new-chat")
            await expect(user).to_have_count(0)
            await expect(greeting).to_have_count(1)
            await expect(page.locator("#title")).to_have_text("New chat")
            await page.click("#topics button[data-key=demo]")
            await expect(page.locator("#topics li.active .key")).to_have_text("demo")
            await expect(user.first).to_have_text(MARKDOWN)
            await expect(user.last).to_have_text(words(80, "w"))
            await expect(assistant.filter(has_text="steer this way")).to_have_count(1)
            await expect(page.locator(".bubble.assistant .note")).to_have_text(["(stopped)"])
        finally:
            await browser.close()
    assert errors == []
