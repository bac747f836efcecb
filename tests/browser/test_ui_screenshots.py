"""The docs' screenshots of the pages a real shadow is not needed for, on
libvirt's test driver: the form with its per-field errors, and a shadow
profiling (its charts' phase marks and the time left).

``VMSHADOW_UPDATE_SCREENSHOT=1`` writes them into ``docs/`` (as
``test_ui_e2e.py`` does the README's ``docs/screenshot.png``); otherwise they
go to the test's temporary folder, so that a test run leaves the work tree
clean. ``scripts/screenshots`` runs both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import UiApp, create, sign_in
from playwright.sync_api import Page, expect

from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionState

pytestmark = [pytest.mark.browser, pytest.mark.libvirt]
DOCS = Path(__file__).resolve().parents[2] / "docs"
S = TransitionState


def shot(page: Page, name: str, tmp_path: Path) -> None:
    where = DOCS if os.environ.get("VMSHADOW_UPDATE_SCREENSHOT") else tmp_path
    path = where / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000  # a page, not a blank one


def test_screenshots_of_the_form_and_a_shadow_profiling(
    ui_app: UiApp, page: Page, tmp_path: Path
) -> None:
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(ui_app.url + "/new")
    page.fill("#vm_name", "Bad Name")
    page.fill("#vcpus", "9")
    page.get_by_role("button", name="Start the shadow").click()
    expect(page.locator("#err-vcpus")).to_contain_text("9 is above the quota of 8")
    shot(page, "screenshot-form.png", tmp_path)

    tid = create(ui_app, "web1")
    st = ui_app.svc.store
    st.advance(tid, S.SHADOWING, "shadowing")
    st.advance(tid, S.PROFILING, "profiling")
    # Two steps of web's ramp, as a shadow measures them: more CPU at the second.
    phases = [(f"s{k}-{kind}", k) for k in (0, 1) for kind in ("cpu", "memory", "io")]
    points = [
        UsagePoint(
            float(t),
            src,
            phase,
            (0.25 + 0.2 * k if kind == 0 else 0.1) + 0.01 * (t % 3),
            180.0 + 40 * k + (60.0 if kind == 1 else 0.0),
            400.0 if kind == 2 else 12.0,
            40.0,
            0.0,
            0.0,
        )
        for i, (phase, k) in enumerate(phases)
        for kind in [i % 3]
        for t in range(1 + 8 * i, 9 + 8 * i)
        for src in (Source.HOST, Source.GUEST)
    ]
    st.add_samples(tid, "shadow", 0, points[: -2 * 4])  # 4 s into the last phase
    page.goto(f"{ui_app.url}/t/{tid}")
    expect(page.locator("#progress")).to_contain_text("step 2/4 (s1-io)")
    expect(page.locator("#charts-shadow canvas")).to_have_count(3)
    expect(page.locator("#phase-marks")).to_contain_text("step 2 (cpu) at 25 s")
    page.wait_for_timeout(800)  # the charts draw a moment after their data
    shot(page, "screenshot-profiling.png", tmp_path)
