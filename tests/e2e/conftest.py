"""Browser tests: the agent console in Debian's Chromium, driven by Playwright, against the
real service, the real Asterisk and real calls (the integration tests' fixtures).

Never `playwright install`: it downloads its own browser; /usr/bin/chromium is the one here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.integration.conftest import *  # noqa: F403  (asterisk, start_service, caller, phones)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab (its own sessionStorage) on the operators' screen size; a script error or a
    blocked resource (Content-Security-Policy) in it fails the test."""
    context = await browser.new_context(viewport={"width": 1366, "height": 768},
                                        locale="it-IT", timezone_id="Europe/Rome")
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield page
    await context.close()
    assert not problems, problems
