"""Helpers of the browser tests (fixtures live in conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionState
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


def open_page(browser: Browser, viewport: ViewportSize, **context: str) -> tuple[Page, Watch]:
    """A page in a new context (``context``: Playwright's, e.g. ``timezone_id``), watched."""
    ctx = browser.new_context(viewport=viewport, **context)  # type: ignore[arg-type]
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


S = TransitionState


def create(app: UiApp, name: str = "web1", **kw: object) -> str:
    body: dict[str, object] = {
        "vm_name": name,
        "profile": "web",
        "load": 200,
        "requested": {"vcpus": 2, "memory_mib": 2048},
        **kw,
    }
    r = httpx.post(f"{app.url}/api/v1/transitions", json=body, headers=app.auth())
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def predicted(app: UiApp, tid: str) -> None:
    """Stand in for the controller up to a prediction (the store's real path),
    with the shadow's samples the stream sends to the charts."""
    st = app.svc.store
    st.advance(tid, S.SHADOWING, "shadowing")
    st.advance(tid, S.PROFILING, "profiling")
    st.add_samples(
        tid,
        "shadow",
        0,
        [
            UsagePoint(float(t), src, "cpu", 0.2 + 0.01 * t, 200.0 + t, 30.0, 10.0, 0.0, 0.0)
            for t in range(1, 30)
            for src in (Source.HOST, Source.GUEST)
        ],
    )
    st.add_prediction(
        tid,
        Prediction(
            "quantile-model",
            "quantile model: P90 x fixed margin 1.2, trained on 612 history records from 31 jobs",
            612,
            1.2,
            Requirement(3.4, 900, 100),
            Allocation(5, 1280, 120),
            detail={
                "median": {"vcpus": 2.9, "memory_mib": 760.0, "iops": 80.0},
                "p90": {"vcpus": 3.4, "memory_mib": 900.0, "iops": 100.0},
                "margins": {"vcpus": 1.2, "memory_mib": 1.2, "iops": 1.2},
                "samples": 58,
            },
        ),
    )
    st.advance(tid, S.PREDICTED, "predicted: 5 vCPU, 1280 MiB, 120 IOPS")


def transitions(app: UiApp) -> list[dict[str, object]]:
    return list(httpx.get(f"{app.url}/api/v1/transitions").json())
