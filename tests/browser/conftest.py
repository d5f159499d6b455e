from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: this machine has no network beyond localhost, so Chromium's background services stay off.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """A headless Chromium per test: while it is open, Playwright's sync API runs an event loop in the test
    thread, which must not outlive the test (the async tests that follow need the thread free)."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing (.ci/run installs it: apt-get install chromium chromium-driver)")
    # The ORM calls a browser test makes beside that loop are plain synchronous calls, so they are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # Django's connections are context-local, and the ORM calls made beside Playwright's loop opened
        # their own: close them here, or the test database cannot be dropped at the end of the session.
        connections.close_all()
