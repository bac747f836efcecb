"""The form's and pages' habits a newcomer trips on (issue 15, "The web UI"): a
profile's own default load, every error at once against the real host limits,
fast launch asked twice, cancelled rows, local times, a verdict that fits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from browser_helpers import DESKTOP, UiApp, create, open_page, predicted, sign_in, transitions
from playwright.sync_api import Browser, Dialog, Page, expect

from vmshadow.config import Settings
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionState

pytestmark = [pytest.mark.browser, pytest.mark.libvirt]
S = TransitionState


def test_switching_profile_sets_that_profiles_default_load(ui_app: UiApp, page: Page) -> None:
    page.goto(ui_app.url + "/new")
    load = page.locator("#load")
    expect(load).to_have_value("200")  # web's ramp tops out at 200 requests/s
    page.select_option("#profile", "oltp")
    expect(load).to_have_value("80")  # not web's 200, far beyond what oltp's shadow measures
    expect(page.locator("#load-unit")).to_have_text("(transactions/s)")
    page.fill("#load", "50")
    page.select_option("#profile", "cache")
    expect(load).to_have_value("12")
    page.select_option("#profile", "smoke")
    expect(load).to_have_value("")


def test_every_error_comes_back_at_once_against_the_hosts_limits(ui_app: UiApp, page: Page) -> None:
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(ui_app.url + "/new")
    # The test driver's host has 16 CPUs and 3,072 MiB; the quota allows 8 vCPUs.
    hint = page.locator("#hint-size")
    expect(hint).to_contain_text("8 vCPUs (the quota)")
    expect(hint).to_contain_text("3,072 MiB (the largest host's memory)")
    page.fill("#vm_name", "Bad Name")
    page.fill("#load", "-5")
    page.fill("#vcpus", "9")
    page.fill("#memory_mib", "4096")
    page.get_by_role("button", name="Start the shadow").click()
    expect(page.locator("#err-vm_name")).to_contain_text("not a valid VM name")
    expect(page.locator("#err-load")).to_contain_text("greater than 0")
    expect(page.locator("#err-vcpus")).to_contain_text("9 is above the quota of 8")
    expect(page.locator("#err-memory_mib")).to_contain_text("more than the host's 3072 MiB")
    expect(page.locator("[aria-invalid=true]")).to_have_count(4)
    expect(page.locator("#vm_name")).to_be_focused()
    expect(page.locator("#form-error")).to_contain_text("correct the marked fields")

    # What only the service can tell (an image name, a date too far ahead) also comes
    # back all at once, from the API's own checks.
    page.fill("#vm_name", "web1")
    page.fill("#load", "100")
    page.fill("#vcpus", "2")
    page.fill("#memory_mib", "1024")
    page.fill("#image", "/no/such.qcow2")
    far = (datetime.now() + timedelta(days=800)).strftime("%Y-%m-%d")
    page.fill("#scheduled_at", f"{far}T09:30")
    page.get_by_role("button", name="Start the shadow").click()
    expect(page.locator("#err-image")).to_contain_text("is not an image name")
    expect(page.locator("#err-scheduled_at")).to_contain_text("more than 365 days ahead")
    expect(page.locator("[aria-invalid=true]")).to_have_count(2)
    assert transitions(ui_app) == []


def test_fast_launch_asks_for_confirmation(ui_app: UiApp, page: Page) -> None:
    sign_in(page, ui_app.url, ui_app.svc.token)
    tid = create(ui_app)
    page.goto(f"{ui_app.url}/t/{tid}")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def on_dialog(d: Dialog) -> None:
            asked.append(d.message)
            d.accept() if accept else d.dismiss()

        page.once("dialog", on_dialog)

    answer(False)
    page.get_by_role("button", name=re.compile("Fast launch")).click()
    assert asked and "without asking you to confirm the size" in asked[-1]
    expect(page.locator("#fast-launch")).to_be_visible()
    assert transitions(ui_app)[0]["fast_launch"] is False
    answer(True)
    page.get_by_role("button", name=re.compile("Fast launch")).click()
    expect(page.locator("#fast-on")).to_contain_text("Fast launch is on")
    assert transitions(ui_app)[0]["fast_launch"] is True

    # Ticked on the form, it is asked too; saying no creates nothing.
    page.goto(ui_app.url + "/new")
    page.fill("#vm_name", "web2")
    page.check("#fast_launch")
    answer(False)
    page.get_by_role("button", name="Start the shadow").click()
    expect(page.locator("#fast_launch")).to_be_checked()
    assert len(asked) == 3 and [t["vm_name"] for t in transitions(ui_app)] == ["web1"]


def test_cancelled_rows_say_cancelled(ui_app: UiApp, page: Page) -> None:
    gone = create(ui_app, "web1")
    waiting = create(ui_app, "web2")
    r = httpx.post(f"{ui_app.url}/api/v1/transitions/{gone}/cancel", headers=ui_app.auth())
    assert r.status_code == 200, r.text
    page.goto(ui_app.url + "/")
    row = page.locator(f"tr[data-id='{gone}']")
    expect(row).to_contain_text("→ cancelled before a prediction")
    expect(row).not_to_contain_text("not predicted yet")
    expect(page.locator(f"tr[data-id='{waiting}']")).to_contain_text("not predicted yet")


def test_times_are_in_the_browsers_time_zone(ui_app: UiApp, browser: Browser) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # UTC+9 all year: no daylight saving to trip on
    page, watch = open_page(browser, DESKTOP, timezone_id="Asia/Tokyo", locale="en-GB")
    try:
        sign_in(page, ui_app.url, ui_app.svc.token)
        page.goto(ui_app.url + "/new")
        page.fill("#vm_name", "web1")
        day = (datetime.now(tokyo) + timedelta(days=3)).date()
        page.fill("#scheduled_at", f"{day.isoformat()}T09:30")
        page.get_by_role("button", name="Start the shadow").click()
        page.wait_for_url(re.compile(r"/t/[0-9a-f]+$"))
        t = transitions(ui_app)[0]
        # Typed as Tokyo's 09:30, stored as the same instant: 00:30 UTC.
        at = datetime.fromisoformat(str(t["scheduled_at"]))
        assert at == datetime(day.year, day.month, day.day, 9, 30, tzinfo=tokyo)
        assert at.astimezone(UTC).strftime("%H:%M") == "00:30"
        # And shown back as Tokyo's time with its zone, not as raw UTC.
        shown = page.locator("#scheduled")
        expect(shown).to_contain_text("09:30")
        expect(shown).to_contain_text("GMT+9")
        expect(shown).not_to_contain_text("UTC")
        first = httpx.get(f"{ui_app.url}/api/v1/transitions/{t['id']}").json()["events"][0]
        local = datetime.fromisoformat(first["at"]).astimezone(tokyo).strftime("%H:%M:%S")
        expect(page.locator("#timeline time").first).to_have_text(local)
        assert watch.external() == [] and watch.errors == []
    finally:
        page.context.close()


def test_the_verdict_column_fits_at_1366_px(ui_app: UiApp, browser: Browser) -> None:
    tid = create(ui_app)
    predicted(ui_app, tid)
    r = httpx.post(f"{ui_app.url}/api/v1/transitions/{tid}/confirm", headers=ui_app.auth())
    assert r.status_code == 200, r.text
    st = ui_app.svc.store
    st.advance(tid, S.RUNNING, "running")

    def used(seconds: range) -> None:
        # The VM used more than it was given: the longest verdict there is.
        point = (6.0, 1500.0, 300.0, 100.0, 0.0, 0.0)
        st.add_samples(
            tid, "vm", 0, [UsagePoint(float(t), Source.HOST, None, *point) for t in seconds]
        )

    used(range(1, 29))
    page, watch = open_page(browser, {"width": 1366, "height": 768})
    try:
        # 28 s after launch the VM is still booting: no verdict yet.
        page.goto(f"{ui_app.url}/t/{tid}")
        verdicts = page.locator("#realized-table td.verdict")
        expect(page.locator("#realized-early")).to_contain_text("Too early to tell")
        expect(verdicts).to_have_text(["too early to tell"] * 3)
        used(range(29, 100))
        page.reload()
        expect(verdicts.first).to_contain_text("under-provisioned: used more than allocated")
        wrap = page.locator("[data-part=realized] .table-wrap")
        scroll, client = wrap.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert scroll <= client, (scroll, client)
        box = wrap.bounding_box()
        assert box is not None
        for i in range(verdicts.count()):
            cell = verdicts.nth(i).bounding_box()
            assert cell and cell["x"] + cell["width"] <= box["x"] + box["width"] + 1
        assert watch.external() == [] and watch.errors == []
    finally:
        page.context.close()


def test_the_list_pages_and_filters_by_state_and_name(ui_app: UiApp, page: Page) -> None:
    ids = {name: create(ui_app, name) for name in ("web1", "db1", "web2", "web3")}
    r = httpx.post(f"{ui_app.url}/api/v1/transitions/{ids['db1']}/cancel", headers=ui_app.auth())
    assert r.status_code == 200, r.text
    names = page.locator("#rows tr[data-id] td[data-label=VM] a")

    page.goto(ui_app.url + "/?limit=2")
    expect(names).to_have_text(["web3", "web2"])  # newest first
    expect(page.locator("#page-range")).to_have_text("rows 1 to 2")
    expect(page.locator("#page-newer")).to_have_count(0)
    page.locator("#page-older").click()
    expect(names).to_have_text(["db1", "web1"])
    expect(page.locator("#page-range")).to_have_text("rows 3 to 4")
    expect(page.locator("#page-older")).to_have_count(0)
    page.locator("#page-newer").click()
    expect(names).to_have_text(["web3", "web2"])

    page.goto(ui_app.url + "/")
    page.get_by_label("VM name contains").fill("WEB")
    page.get_by_label("State").select_option("requested")
    page.get_by_role("button", name="Filter").click()
    expect(names).to_have_text(["web3", "web2", "web1"])
    page.get_by_label("State").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#rows")).to_contain_text("No transition matches")
    page.get_by_label("VM name contains").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(names).to_have_text(["db1"])
    # The list refreshes itself within its filter: a new cancellation shows up, nothing else.
    ui_app.svc.store.advance(ids["web1"], S.CANCELLED, "cancelled")
    expect(names).to_have_text(["db1", "web1"], timeout=10_000)
    page.get_by_role("link", name="Show all").first.click()
    expect(names).to_have_count(4)


def test_charts_mark_phases_and_steps_and_profiling_shows_the_time_left(
    ui_app: UiApp, page: Page
) -> None:
    tid = create(ui_app)  # web: a ramp of 4 steps, 3 phases each
    st = ui_app.svc.store
    st.advance(tid, S.SHADOWING, "shadowing")
    st.advance(tid, S.PROFILING, "profiling")

    def ran(phase: str, seconds: range) -> None:
        st.add_samples(
            tid,
            "shadow",
            0,
            [
                UsagePoint(float(t), src, phase, 0.5, 200.0, 30.0, 10.0, 0.0, 0.0)
                for t in seconds
                for src in (Source.HOST, Source.GUEST)
            ],
        )

    for phase, start in (("s0-cpu", 1), ("s0-memory", 9), ("s0-io", 17)):
        ran(phase, range(start, start + 8))
    ran("s1-cpu", range(25, 31))
    page.goto(f"{ui_app.url}/t/{tid}")
    # Phases of 8 s measured ((25 - 1) / 3), 9 still to run, 5 s into this one.
    progress = page.locator("#progress")
    expect(progress).to_have_text("Profiling: step 2/4 (s1-cpu), about 67 s left")
    expect(page.locator("#charts-shadow canvas")).to_have_count(3)
    expect(page.locator("#phase-marks")).to_have_text(
        "Phase starts: step 1 (cpu) at 1 s, memory at 9 s, io at 17 s, step 2 (cpu) at 25 s."
    )
    # It follows the stream: a new phase moves the clock and adds a mark.
    ran("s1-cpu", range(31, 34))
    ran("s1-memory", range(34, 37))
    expect(progress).to_have_text("Profiling: step 2/4 (s1-memory), about 64 s left")
    expect(page.locator("#phase-marks")).to_contain_text("step 2 (cpu) at 25 s, memory at 34 s.")
    # A step's start is drawn on the chart: a dark line where a phase's is light.
    plot = page.locator("#charts-shadow .chart[data-metric=busy_vcpus] canvas")
    dark = plot.evaluate(
        """c => { const g = c.getContext('2d'); let n = 0;
                  for (let x = 0; x < c.width; x++) {
                    const [r, gr, b, a] = g.getImageData(x, c.height / 3, 1, 1).data;
                    if (a > 200 && r === 0x47 && gr === 0x55 && b === 0x69) n++; }
                  return n; }"""
    )
    assert dark >= 2, dark  # step 1 and step 2
    st.advance(tid, S.PREDICTED, "predicted")
    expect(progress).to_have_count(0, timeout=12_000)


def test_a_scheduled_launch_says_when_its_shadow_starts(
    ui_app: UiApp, ui_settings: Settings, browser: Browser
) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    lead = ui_settings.controller.default_lead_s  # no shadow timed yet: the default
    now = datetime.now(UTC).replace(microsecond=0)
    later = create(ui_app, "web1", scheduled_at=(now + timedelta(hours=3)).isoformat())
    soon = create(ui_app, "web2", scheduled_at=(now + timedelta(seconds=lead - 30)).isoformat())
    # Due in a few seconds: the page turns to "being started" by itself.
    turning = create(ui_app, "web3", scheduled_at=(now + timedelta(seconds=lead + 6)).isoformat())
    page, watch = open_page(browser, DESKTOP, timezone_id="Asia/Tokyo", locale="en-GB")
    try:
        page.goto(f"{ui_app.url}/t/{later}")
        start = (now + timedelta(hours=3) - timedelta(seconds=lead)).astimezone(tokyo)
        shown = page.locator("#shadow-start")
        expect(shown).to_contain_text("the shadow will start at")
        expect(shown.locator("time")).to_contain_text(start.strftime("%H:%M"))
        expect(shown.locator("time")).to_contain_text("GMT+9")
        expect(shown).to_contain_text("(2 min ahead, for the prediction to be ready on time)")
        page.goto(f"{ui_app.url}/t/{soon}")
        expect(shown).to_contain_text("the shadow is being started")
        page.goto(f"{ui_app.url}/t/{turning}")
        expect(shown).to_contain_text("the shadow will start at")
        expect(shown).to_contain_text("the shadow is being started", timeout=20_000)
        # Once the controller has started it, the state says so and the line goes.
        ui_app.svc.store.advance(turning, S.SHADOWING, "shadowing")
        expect(shown).to_have_count(0)
        assert watch.external() == [] and watch.errors == []
    finally:
        page.context.close()
