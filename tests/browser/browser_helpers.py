"""Helpers of the browser tests (fixtures live in conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize

from vmshadow.server import Service

CHROMIUM = "/usr/bin/chromium"
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
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@dataclass
class Watch:
    """What a page did that a test must not allow."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def external(self) -> list[str]:
        return [
            u
            for u in self.requests
            if urlsplit(u).scheme not in ("data", "blob", "about")
            and urlsplit(u).hostname not in LOOPBACK
        ]


def open_page(browser: Browser, viewport: ViewportSize) -> tuple[Page, Watch]:
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    watch = Watch()
    page.on("request", lambda r: watch.requests.append(r.url))

    def console(msg: ConsoleMessage) -> None:
        # A 401/409/422 answer is what some tests ask for: Chromium logs those
        # as failed resource loads, which are not script errors.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            watch.errors.append(msg.text)

    page.on("console", console)
    page.on("pageerror", lambda e: watch.errors.append(str(e)))
    return page, watch


@dataclass
class UiApp:
    url: str
    svc: Service

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.svc.token}"}


def sign_in(page: Page, base: str, token: str) -> None:
    """Through the sign-in page, as an operator does."""
    page.goto(f"{base}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
