"""The web chat's approval buttons in a real headless Chromium against a real Gateway:
the question shows Approve / Deny, a click decides, the buttons give way to the outcome.
Skipped like tests/test_webchat_browser.py when no browser is available."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config_loader import load_config
from runtime.history import ToolResultEntry
from tests.fakes.scripted_provider import Call, ScriptedProvider, Text
from tests.gateway_config import WEBCHAT_SECTION, write_gateway_toml
from tests.test_webchat_browser import CHROMIUM, CHROMIUM_ARGS, browser_ready

__all__ = ["browser_ready"]  # a fixture this module uses


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Gateway, ScriptedProvider]]:
    path = write_gateway_toml(
        tmp_path, WEBCHAT_SECTION, agent_keys='approve = ["get_time"]', shutdown_grace=0.5
    )
    provider = ScriptedProvider("scripted")
    gateway = Gateway(load_config(path, env={}), providers={"main": provider})
    await gateway.start()
    try:
        yield gateway, provider
    finally:
        await gateway.stop()


async def test_clicking_approve_in_the_page(
    browser_ready: None, rig: tuple[Gateway, ScriptedProvider]
) -> None:
    from playwright.async_api import async_playwright, expect

    gateway, provider = rig
    assert gateway.server is not None
    provider.script(Call("get_time", '{"timezone": "UTC"}'))
    provider.script(Text("The time has come."))
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{gateway.server.url}/")
            await expect(page.locator("#status")).to_have_text("connected")
            await page.locator("#input").fill("what time is it?")
            await page.locator("#input").press("Enter")
            question = page.locator(".bubble.approval")
            await expect(question).to_contain_text("wants to run get_time")
            await expect(question.locator("button")).to_have_text(["Approve", "Deny"])
            await question.locator("button", has_text="Approve").click()
            await expect(question).to_have_text("get_time: approved by you.")
            await expect(question.locator("button")).to_have_count(0)
            await expect(page.locator(".bubble.system").last).to_have_text("Approved.")
            await expect(
                page.locator(".bubble.assistant", has_text="The time has come.")
            ).to_have_count(1)
        finally:
            await browser.close()
    assert errors == []
    results = [e for e in provider.requests[-1].messages if isinstance(e, ToolResultEntry)]
    assert not results[-1].is_error
