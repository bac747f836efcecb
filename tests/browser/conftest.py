"""The web UI in real headless Chromium (Debian's ``/usr/bin/chromium``) through Playwright.

Never ``playwright install``: the browser is the distribution's. Every page
records the requests it makes, and each test fails if one left the loopback
host or if the page logged a JavaScript error.

``ui_app`` serves the real app (API + UI, no controller) on libvirt's
``test:///default`` driver from a thread on loopback: the cheap tests of forms,
list, keyboard and phone width. The end-to-end test runs ``vmshadow serve``
with real shadows (``tests/e2e/service_helpers.py``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, DESKTOP, UiApp, Watch, open_page
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from sse_starlette.sse import AppStatus

from vmshadow.config import Settings, load_settings
from vmshadow.server import build

# The end-to-end helpers live beside the e2e tests; rootdir-relative imports
# put only a test's own folder on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./scripts/setup (Debian package chromium)")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


@pytest.fixture
def watched(browser: Browser) -> Iterator[tuple[Page, Watch]]:
    page, watch = open_page(browser, DESKTOP)
    yield page, watch
    page.context.close()
    assert watch.external() == [], "requests left the host"
    assert watch.errors == [], "the page logged errors"


@pytest.fixture
def page(watched: tuple[Page, Watch]) -> Page:
    return watched[0]


@pytest.fixture
def ui_settings(tmp_path: Path) -> Settings:
    return load_settings(
        {
            ("data_dir",): str(tmp_path),
            ("libvirt_uri",): "test:///default",
            ("quotas", "max_vcpus"): 8,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )


@pytest.fixture
def ui_app(ui_settings: Settings) -> Iterator[UiApp]:
    # sse-starlette keeps its shutdown event in a class attribute, bound to the
    # first event loop that streamed; each test's server has a loop of its own.
    AppStatus.should_exit = False
    AppStatus.should_exit_event = None
    svc = build(ui_settings, with_controller=False)
    config = uvicorn.Config(
        svc.app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the app did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield UiApp(f"http://127.0.0.1:{port}", svc)
    server.should_exit = True
    thread.join(timeout=20)
