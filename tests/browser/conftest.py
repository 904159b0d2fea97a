"""The console in a real browser: Debian's Chromium driven by Playwright, against the whole
broker (real RabbitMQ, SQLite) with the demo case played through it, served by uvicorn on
a free port on 127.0.0.1.

The broker runs in a thread with its own event loop, so the tests use Playwright's sync API.
``MASP_UI_SCREENSHOTS=docs/screenshots`` makes the tests save a screenshot of each main page.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from broker.api.app import create_app
from tests.integration.console_support import DemoBroker, demo_broker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 90.0
SCREENSHOT_MAX_PX = 1600


@dataclass
class Console:
    base_url: str
    broker: DemoBroker

    def token(self, role: str, sub: str) -> str:
        return self.broker.token(role, sub)


class _ServedBroker:
    """The demo broker and its HTTP server, alive in a background thread until ``stop``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.broker: DemoBroker | None = None
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="console-broker", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread by start()
            self.error = exc

    async def _main(self) -> None:
        async with demo_broker(self.home, f"sqlite+aiosqlite:///{self.home / 'masp.db'}") as broker:
            self.broker = broker
            config = uvicorn.Config(create_app(broker.service), log_level="warning", lifespan="off",
                                    access_log=False, log_config=None)
            self.server = uvicorn.Server(config)
            await self.server.serve(sockets=[self.sock])

    def start(self) -> Console:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.server is not None and self.server.started):
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError("the console broker did not start") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError("the console broker did not start in time")
            time.sleep(0.05)
        assert self.broker is not None
        return Console(f"http://127.0.0.1:{self.port}", self.broker)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    served = _ServedBroker(tmp_path_factory.mktemp("console"))
    try:
        yield served.start()
    finally:
        served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser, console: Console) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=console.base_url, accept_downloads=True,
                              viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


_AXE = Axe()


def assert_accessible(page: Page) -> None:
    """axe-core on the page as rendered: no serious or critical violations."""
    results = _AXE.run(page)
    bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
           for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{page.url}: " + "; ".join(bad)


def screenshot(page: Page, name: str) -> None:
    """Save a full-page screenshot when MASP_UI_SCREENSHOTS names a directory."""
    target = os.environ.get("MASP_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        height = min(int(page.evaluate("document.documentElement.scrollHeight")), SCREENSHOT_MAX_PX)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": height})


def sign_in(page: Page, console: Console, role: str, sub: str) -> None:
    """Through the sign-in form, as a person would: paste the token, submit."""
    page.goto("/ui/sign-in")
    page.get_by_label("Role token").fill(console.token(role, sub))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui")
