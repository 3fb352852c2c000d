"""A real browser for the admin page: Debian's Chromium, headless, driven by playwright.

playwright cannot download its own browsers here, so it drives the system's ``chromium``
(``make test`` installs it when missing). Each test gets a fresh ``servermode serve`` process
with an admin and a read token, and a fresh browser page; a console error (a script error, a
Content-Security-Policy violation, a failed load) fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from ..e2e.servers import free_port, running_process

ADMIN_TOKEN = "browser-admin-token"
READ_TOKEN = "browser-read-token"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
EXPECTED_REFUSAL = re.compile(r"the server responded with a status of 40[13]\b")
PHONE = {"width": 390, "height": 844}


# Module scope, not session: playwright's sync API runs an event loop on the main thread
# while it is open, and later tests call asyncio.run() there.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("the browser tests need Debian's chromium: `make test` installs it")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Service:
    url: str
    api: httpx2.Client = field(repr=False)

    @property
    def page_url(self) -> str:
        return f"{self.url}/server/ui"


@contextmanager
def serving(read_token: str | None = READ_TOKEN) -> Iterator[Service]:
    """A real `servermode serve`: the admin token (and a read token unless None), the demo
    app, a 10 s drain timeout."""
    port = free_port()
    argv = [sys.executable, "-m", "servermode.adapters.cli", "serve", "--port", str(port)]
    argv += ["--demo-delay", "0", "--drain-timeout", "10", "--log-format", "json"]
    env = {"SERVERMODE_ADMIN_TOKEN": ADMIN_TOKEN}
    if read_token is not None:
        env["SERVERMODE_READ_TOKEN"] = read_token
    with running_process(argv, port, env=env) as url:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx2.Client(base_url=url, headers=headers, timeout=15) as api:
            yield Service(url, api)


@pytest.fixture
def service() -> Iterator[Service]:
    """A service with both tokens."""
    with serving() as running:
        yield running


@dataclass
class Watched:
    """A page and what it did: console errors, navigations of the main frame, POSTs sent."""

    page: Page
    errors: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    watched = Watched(page)

    def console(message: ConsoleMessage) -> None:
        # A refused token is an answer the page handles (Chromium logs each 401/403 anyway).
        if message.type == "error" and not EXPECTED_REFUSAL.search(message.text):
            watched.errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on(
        "framenavigated",
        lambda frame: watched.navigations.append(frame.url) if frame == page.main_frame else None,
    )
    page.on(
        "request",
        lambda request: watched.posts.append(request.url) if request.method == "POST" else None,
    )
    try:
        yield watched
    finally:
        context.close()
    assert watched.errors == [], watched.errors


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where screenshots go: SERVERMODE_SCREENSHOT_DIR (`make screenshot`: docs/) or tmp."""
    folder = Path(os.environ.get("SERVERMODE_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
