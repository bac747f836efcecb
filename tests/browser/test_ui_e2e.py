"""A whole launch from the web UI, in headless Chromium, against ``vmshadow serve``
with a real shadow under QEMU: the form, the live charts, the prediction card,
an override below the need and its warning, confirm, the VM running, and the
realized figures beside the predicted ones.

The README's ``docs/screenshot.png`` is this test's screenshot of the page with
a prediction and an override warning: ``VMSHADOW_UPDATE_SCREENSHOT=1`` writes
it there (otherwise it goes to the test's temporary folder, so that a test run
leaves the work tree clean); ``scripts/screenshots`` sets it."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import Watch
from playwright.sync_api import Page, expect
from service_helpers import cached_accelerator, service

from vmshadow.config import Settings, load_settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
# Under TCG on a busy 2-core host a shadow takes minutes, not seconds.
SLOW = 300_000


@pytest.fixture(scope="module")
def settings() -> Settings:
    s = load_settings(config_path=Path("/nonexistent"), environ={})
    if find_image(s.images_dir) is None:
        pytest.fail(f"no shadow image in {s.images_dir}: run ./scripts/setup first")
    return s


@pytest.fixture(scope="module")
def accel(settings: Settings) -> str:
    return cached_accelerator(settings).value


@pytest.fixture
def vm_name(settings: Settings) -> Iterator[str]:
    name = f"ui-{uuid.uuid4().hex[:8]}"
    yield name
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        if hv.state(name) is not None:
            hv.remove_full_vm(name)


def test_launch_from_the_browser_with_a_real_shadow(
    settings: Settings, accel: str, vm_name: str, watched: tuple[Page, Watch], tmp_path: Path
) -> None:
    page, _watch = watched
    with service(settings, VMSHADOW_ACCELERATOR=accel) as run:
        base = f"http://127.0.0.1:{run.port}"
        # Signed in by the link `vmshadow serve` prints (the token in the fragment).
        page.goto(f"{base}/login?next=/new#token={run.token}")
        page.wait_for_url(f"{base}/new")

        page.get_by_label("VM name").fill(vm_name)
        page.get_by_label("Workload profile").select_option("web")
        page.get_by_label("Expected load").fill("200")
        page.get_by_label("vCPUs").fill("2")
        page.get_by_label("Memory (MiB)").fill("2048")
        page.get_by_role("button", name="Start the shadow").click()
        page.wait_for_url(re.compile(r"/t/[0-9a-f]+$"))
        tid = page.url.rsplit("/", 1)[1]

        # The shadow's measurements arrive live, before any prediction.
        expect(page.locator("#charts-shadow canvas")).to_have_count(3, timeout=SLOW)
        expect(page.locator("#charts-status")).to_contain_text("samples")
        expect(page.locator("#state-badge")).to_have_text("predicted", timeout=SLOW)
        card = page.locator("#prediction-card")
        expect(card).to_contain_text("history record")
        expect(card.locator("tr[data-resource=memory_mib] td").last).to_have_text(
            re.compile(r"^\d[\d,]* MiB$")
        )
        expect(page.locator("#timeline")).to_contain_text("pending VM")

        # An override below the predicted memory need is warned about, with numbers.
        need = run.get(tid)["prediction"]["need"]
        assert need["memory_mib"] > 128, need
        page.get_by_label("Memory (MiB)").fill("128")
        warning = page.locator("#override-warnings li[data-resource=memory_mib]")
        expect(warning).to_contain_text(
            re.compile(r"predicted peak [\d.]+ MiB > 128 chosen: expect swapping or the OOM killer")
        )
        expect(page.locator("#ack-field")).to_be_visible()
        shot = SCREENSHOT if os.environ.get("VMSHADOW_UPDATE_SCREENSHOT") else tmp_path / "t.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000  # a whole page, not a blank one

        # Confirm launches with the recommendation, not the typed override.
        page.get_by_role("button", name="Confirm and launch").click()
        expect(page.locator("#state-badge")).to_have_text(
            re.compile("^(launching|running|completed)$"), timeout=30_000
        )
        t = run.get(tid)
        # The recommendation covers the predicted need; the typed 128 MiB was not used.
        assert t["decision"] == "prediction" and t["final"]["memory_mib"] >= need["memory_mib"]
        expect(page.locator("#state-badge")).to_have_text(
            re.compile("^(running|completed)$"), timeout=SLOW
        )
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            assert hv.is_running(vm_name)
        # The observation window (6 s here) ends with realized beside predicted.
        expect(page.locator("#state-badge")).to_have_text("completed", timeout=SLOW)
        realized = page.locator("#realized-table")
        expect(realized.locator("tbody tr")).to_have_count(3)
        expect(realized.locator("tr[data-resource=vcpus] td").nth(1)).to_contain_text(
            f"{t['final']['vcpus']} vCPU"
        )
        expect(page.locator("#charts-vm canvas")).to_have_count(3)
