"""The web UI on libvirt's test driver, without a controller: the list, the form
and its per-field errors, signing in, decisions on a stored prediction, the
keyboard alone and a phone's width, in real headless Chromium."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from browser_helpers import PHONE, UiApp, create, open_page, predicted, sign_in, transitions
from playwright.sync_api import Browser, Page, expect

from vmshadow.domain.transition import TransitionState

pytestmark = [pytest.mark.browser, pytest.mark.libvirt]
S = TransitionState


def test_list_shows_requested_against_recommended_and_follows_states(
    ui_app: UiApp, page: Page
) -> None:
    waiting = create(ui_app, "web1")
    predicted(ui_app, waiting)
    fresh = create(ui_app, "db1", profile="oltp", load=100)
    page.goto(ui_app.url + "/")
    row = page.locator(f"tr[data-id='{waiting}']")
    expect(row.get_by_role("link", name="web1")).to_have_attribute("href", f"/t/{waiting}")
    expect(row.locator(".state")).to_have_text("predicted")
    expect(row).to_contain_text("decide")
    # 2 vCPU asked, 5 recommended: the request is under-provisioned; memory over.
    expect(row.locator("li.sev-risk")).to_contain_text("2 vCPU → 5 vCPU under-provisioned")
    expect(row.locator("li.sev-change")).to_contain_text("2,048 MiB → 1,280 MiB over-provisioned")
    expect(row.locator("time")).to_have_text(re.compile(r"^\d+ s$"))
    other = page.locator(f"tr[data-id='{fresh}']")
    expect(other).to_contain_text("oltp @ 100")
    expect(other).to_contain_text("not predicted yet")
    # The list follows the store without a reload.
    ui_app.svc.store.advance(fresh, S.SHADOWING, "shadowing")
    expect(other.locator(".state")).to_have_text("shadowing", timeout=10_000)


@pytest.mark.parametrize(
    ("fill", "field", "reason"),
    [
        ({"#vm_name": "Bad Name"}, "vm_name", "not a valid VM name"),
        ({"#vm_name": "test"}, "vm_name", "already exists"),  # the test driver's own domain
        ({"#profile": "web", "#load": ""}, "load", "needs the expected load"),
        ({"#vcpus": "0"}, "vcpus", "greater than or equal to 1"),
        ({"#vcpus": "9"}, "vcpus", "above the quota of 8"),
        ({"#memory_mib": "200000"}, "memory_mib", "more than the host's"),
        ({"#image": "/no/such.qcow2"}, "image", "is not an image name"),
        ({"#load": "-5"}, "load", "greater than 0"),
        ({"resize": "", "#vm_name": "nosuch"}, "vm_name", "not a VM vmshadow manages"),
    ],
)
def test_form_shows_the_apis_error_under_its_field(
    ui_app: UiApp, page: Page, fill: dict[str, str], field: str, reason: str
) -> None:
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(ui_app.url + "/new")
    page.fill("#vm_name", "web1")
    for selector, value in fill.items():
        if selector == "resize":
            page.get_by_label("Resize a VM vmshadow launched").check()
        elif selector == "#profile":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)
    page.get_by_role("button", name="Start the shadow").click()
    error = page.locator(f"#err-{field}")
    expect(error).to_contain_text(reason)
    control = page.locator(f"#{field}")
    expect(control).to_have_attribute("aria-invalid", "true")
    expect(control).to_be_focused()
    expect(page.locator("#form-error")).to_contain_text("correct the marked field")
    # Only that field is marked, and nothing was created.
    assert page.locator("[aria-invalid=true]").count() == 1
    assert transitions(ui_app) == []


def test_a_launch_without_the_token_is_refused(ui_app: UiApp, page: Page) -> None:
    page.goto(ui_app.url + "/new")
    page.fill("#vm_name", "web1")
    page.get_by_role("button", name="Start the shadow").click()
    box = page.locator("#form-error")
    expect(box).to_contain_text("Sign in with the API token first")
    expect(box.get_by_role("link", name="Sign in")).to_have_attribute("href", "/login?next=%2Fnew")
    assert transitions(ui_app) == []


def test_sign_in_checks_the_token_and_keeps_it_out_of_the_url(ui_app: UiApp, page: Page) -> None:
    page.goto(ui_app.url + "/login#token=not-the-token")
    expect(page.locator("#token-error")).to_contain_text("not the service's token")
    assert "#" not in page.url
    page.goto(f"{ui_app.url}/login?next=/new#token={ui_app.svc.token}")
    page.wait_for_url(ui_app.url + "/new")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert ui_app.svc.token not in page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()


def test_launch_from_the_form_then_fast_launch(ui_app: UiApp, page: Page) -> None:
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(ui_app.url + "/new")
    page.fill("#vm_name", "web7")
    page.select_option("#profile", "oltp")
    expect(page.locator("#load-unit")).to_have_text("(transactions/s)")
    page.fill("#load", "100")
    page.fill("#vcpus", "4")
    page.fill("#memory_mib", "1024")
    # Within controller.schedule_ahead_s (365 days): a fixed year went out of range.
    when = (datetime.now() + timedelta(days=30)).strftime("%Y-%m-%d")
    page.fill("#scheduled_at", f"{when}T09:30")
    page.get_by_role("button", name="Start the shadow").click()
    page.wait_for_url(re.compile(r"/t/[0-9a-f]+$"))
    t = transitions(ui_app)[0]
    assert (t["vm_name"], t["profile"], t["load"]) == ("web7", "oltp", 100)
    assert t["requested"] == {"vcpus": 4, "memory_mib": 1024, "iops": None}
    assert str(t["scheduled_at"]).startswith(when)
    expect(page.locator("#state-badge")).to_have_text("requested")
    expect(page.locator("#timeline")).to_contain_text("launch of web7 requested")
    expect(page.locator("#prediction-pending")).to_be_visible()
    page.once("dialog", lambda d: d.accept())  # fast launch asks first
    page.get_by_role("button", name=re.compile("Fast launch")).click()
    expect(page.locator("#fast-on")).to_contain_text("Fast launch is on")
    expect(page.locator("#timeline")).to_contain_text("fast launch: will launch as soon as")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_hidden()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#state-badge")).to_have_text("cancelled")
    expect(page.locator(".steps .step-ended")).to_contain_text("cancelled")


def test_prediction_card_override_warning_and_confirm(ui_app: UiApp, page: Page) -> None:
    tid = create(ui_app)
    predicted(ui_app, tid)
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(f"{ui_app.url}/t/{tid}")
    card = page.locator("#prediction-card")
    expect(card).to_contain_text("quantile-model")
    expect(card).to_contain_text("Backed by 612 history records and 58 shadow samples")
    cpu = card.locator("tr[data-resource=vcpus]")
    expect(cpu.locator("td")).to_have_text(["2 vCPU", "2.9 vCPU", "3.4 vCPU", "x1.2", "5 vCPU"])
    # The stream fills the shadow's three charts.
    expect(page.locator("#charts-shadow")).to_be_visible()
    expect(page.locator("#charts-shadow canvas")).to_have_count(3)
    expect(page.locator("#charts-status")).to_contain_text("58 samples")

    page.fill("#ov-vcpus", "2")
    warnings = page.locator("#override-warnings")
    expect(warnings).to_contain_text("predicted P95 3.4 vCPU > 2 chosen: expect CPU contention")
    expect(page.locator("#ack-field")).to_be_visible()
    page.get_by_role("button", name="Launch with this size").click()
    expect(page.locator("#ov-err-acknowledge_risk")).to_contain_text("Tick this box")
    expect(page.locator("#acknowledge_risk")).to_be_focused()
    assert transitions(ui_app)[0]["state"] == "predicted"
    page.fill("#ov-vcpus", "5")
    expect(warnings).to_contain_text("No warning")
    expect(page.locator("#ack-field")).to_be_hidden()

    page.get_by_role("button", name="Confirm and launch").click()
    expect(page.locator("#state-badge")).to_have_text("launching")
    expect(page.locator("[data-part=decide]")).to_contain_text("Launching web1 with 5 vCPU")
    t = transitions(ui_app)[0]
    assert t["decision"] == "prediction" and t["final"] == {
        "vcpus": 5,
        "memory_mib": 1280,
        "iops": 120,
    }


def test_keyboard_alone_launches_and_confirms(ui_app: UiApp, page: Page) -> None:
    sign_in(page, ui_app.url, ui_app.svc.token)
    page.goto(ui_app.url + "/new")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    order: list[str] = []
    for _ in range(30):
        page.keyboard.press("Tab")
        order.append(page.evaluate("(e => e.id || e.textContent)(document.activeElement)"))
    fields = ["vm_name", "image", "profile", "load", "vcpus", "memory_mib", "iops"]
    fields += ["scheduled_at", "fast_launch", "Start the shadow"]
    seen = [x for i, x in enumerate(order) if x in fields and x not in order[:i]]
    assert seen == fields, order  # in reading order, each reachable
    # Focus is visible.
    page.focus("#vm_name")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.type("kb1")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_url(re.compile(r"/t/[0-9a-f]+$"))
    tid = page.url.rsplit("/", 1)[1]
    predicted(ui_app, tid)
    page.reload()
    page.focus("#override-form input#ov-vcpus")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Confirm and launch")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#state-badge")).to_have_text("launching")


def test_phone_width_has_no_sideways_scroll(
    ui_app: UiApp, browser: Browser, tmp_path: Path
) -> None:
    tid = create(ui_app)
    predicted(ui_app, tid)
    page, watch = open_page(browser, PHONE)
    try:
        for path in ("/", "/new", "/login", f"/t/{tid}"):
            page.goto(ui_app.url + path)
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= PHONE["width"], (path, wide)
        # On the transition page the card's rows stack, labelled.
        expect(page.locator("#charts-shadow canvas")).to_have_count(3)
        vcpus = page.locator("#ov-vcpus").bounding_box()
        mem = page.locator("#ov-memory_mib").bounding_box()
        assert vcpus and mem and mem["y"] > vcpus["y"] + vcpus["height"]
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
        assert watch.external() == [] and watch.errors == []
    finally:
        page.context.close()


def test_unknown_transition_is_a_page_not_a_traceback(ui_app: UiApp, page: Page) -> None:
    r = page.goto(ui_app.url + "/t/nope")
    assert r is not None and r.status == 404
    expect(page.get_by_role("alert")).to_have_text("There is no transition nope.")
    assert "Traceback" not in page.content()
