"""The VMs page in Chromium: the list, and the delete button through the API
with the tab's token (refused with a sign-in link without one)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import UiApp, sign_in
from playwright.sync_api import Dialog, Page, expect

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

# The managed-VM helpers live beside the integration tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import managed_vms as mv

pytestmark = [pytest.mark.browser, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor("test:///default") as conn:
        yield conn
        mv.remove_all(conn)


def test_delete_from_the_vms_page(
    ui_app: UiApp, ui_settings: Settings, page: Page, hv: LibvirtHypervisor
) -> None:
    svc = ui_app.svc
    tid = mv.launched(ui_settings, svc.store, hv, "web1", state=mv.S.RUNNING)
    questions: list[str] = []

    def answer(d: Dialog) -> None:
        questions.append(d.message)
        d.accept()

    page.on("dialog", answer)
    page.goto(ui_app.url + "/vms")
    row = page.locator("#vms tr[data-vm=web1]")
    expect(row).to_contain_text("running")
    # Not signed in: the API refuses, the page says so and keeps the VM.
    row.get_by_role("button", name="Delete web1").click()
    expect(page.locator("#vms-error")).to_contain_text("Sign in with the API token first.")
    assert "web1" in mv.domain_names()

    sign_in(page, ui_app.url, svc.token)
    page.get_by_role("link", name="VMs", exact=True).click()
    page.locator("#vms tr[data-vm=web1]").get_by_role("button", name="Delete web1").click()
    expect(page.locator("#vms")).to_contain_text("No VMs launched by vmshadow")
    assert questions[-1].startswith(f"Delete web1? Its transition {tid} (running) is ended first.")
    assert "web1" not in mv.domain_names()
