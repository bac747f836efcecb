"""The prediction card says how sure it is (issue 18, item 8): the need's
interval per resource in place of the P90 column a ramp prediction cannot
fill, the 0-4 risk with what drives it, the history count and the host
contention of the shadow run; and a prediction stored before intervals
existed shows none rather than invented ones."""

from __future__ import annotations

from typing import Any

import pytest
from browser_helpers import UiApp, create, sign_in
from playwright.sync_api import Page, expect

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.transition import TransitionState

pytestmark = [pytest.mark.browser, pytest.mark.libvirt]
S = TransitionState


def ramp_predicted(app: UiApp, tid: str, **detail: Any) -> None:
    """Stand in for the controller up to a ramp prediction (the store's real path)."""
    st = app.svc.store
    st.advance(tid, S.SHADOWING, "shadowing")
    st.advance(tid, S.PROFILING, "profiling")
    st.add_prediction(
        tid,
        Prediction(
            "ramp-extrapolation",
            "physical extrapolation from 1 ramp steps (up to 50, target 200: x4.0 beyond "
            "the ramp) with margin x1.2",
            0,
            1.2,
            Requirement(1.7, 600, 80),
            Allocation(2, 768, 100),
            detail={
                "ramp": [{"step": 0, "load": 50.0}],
                "contention": {
                    "limit": 0.1,
                    "max_wait": 0.18,
                    "max_wait_phase": "s0-cpu",
                    "contended_phases": ["s0-cpu"],
                },
                **detail,
            },
        ),
    )
    st.advance(tid, S.PREDICTED, "predicted: 2 vCPU, 768 MiB, 100 IOPS")


def test_a_ramp_card_shows_intervals_and_the_risk_with_its_drivers(
    ui_app: UiApp, page: Page
) -> None:
    tid = create(ui_app)
    ramp_predicted(
        ui_app,
        tid,
        interval={"vcpus": [1.4, 2.1], "memory_mib": [560, 650], "iops": [70, 95]},
        interval_coverage=0.9,
        history_count=0,
    )
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(f"{ui_app.url}/t/{tid}")
    card = page.locator("#prediction-card")
    headers = card.locator("thead th")
    expect(headers).to_have_text(
        ["Resource", "Requested", "Predicted need", "Interval (90 %)", "Margin", "Recommended"]
    )
    cpu = card.locator("tr[data-resource=vcpus] td")
    expect(cpu).to_have_text(["2 vCPU", "1.7 vCPU", "1.4-2.1 vCPU", "x1.2", "2 vCPU"])
    expect(card.locator("tr[data-resource=memory_mib] td").nth(2)).to_have_text("560-650 MiB")
    conf = card.locator("#confidence")
    expect(conf).to_have_attribute("data-risk", "4")
    expect(conf.locator(".risk")).to_have_text("Risk 4 of 4 (very high)")
    expect(conf.locator(".drivers li")).to_have_text(
        [
            "recommendation below the interval's upper bound (vCPU 2 < 2.1)",
            "host contention 18 % during the shadow run",
            "no history behind the answer",
            "one ramp step: extrapolated x4.0 beyond it",
        ]
    )
    expect(conf).to_contain_text("History records: 0.")
    expect(conf).to_contain_text(
        "Host contention during the shadow run: vCPU wait 18 % (limit 10 %), over it in s0-cpu."
    )
    # Its interval covers the estimate's error, not the margin alone.
    expect(card).not_to_contain_text("the margin is all that covers its error")


def test_a_prediction_without_intervals_shows_none(ui_app: UiApp, page: Page) -> None:
    tid = create(ui_app)
    ramp_predicted(ui_app, tid)  # stored as before intervals existed
    page.goto(f"{ui_app.url}/t/{tid}")
    card = page.locator("#prediction-card")
    expect(card.locator("thead th")).to_have_text(
        ["Resource", "Requested", "Predicted need", "Margin", "Recommended"]
    )
    conf = card.locator("#confidence")
    expect(conf).to_have_attribute("data-risk", "4")
    expect(conf.locator(".drivers")).to_contain_text("no interval recorded")
    expect(conf).to_contain_text("Interval: — (no interval recorded for this prediction).")
