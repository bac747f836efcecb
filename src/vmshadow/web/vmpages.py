"""The web UI's VMs page: the VMs vmshadow launched, with a delete button each.

Rendered by the server from ``usecases/vms.py``, as ``GET /api/v1/vms``
lists them (Jinja autoescape: every name, address and error is text). The
delete button calls ``DELETE /api/v1/vms/{name}`` from ``static/vms.js``
with the bearer token of the tab, as the transition page's cancel does: the
page itself holds no authority, so another site cannot delete through it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from vmshadow.controller.service import TransitionService
from vmshadow.domain.errors import VmshadowError
from vmshadow.usecases.vms import ManagedVm, VmListing, list_vms
from vmshadow.web.pages import PAGE_HEADERS, _env


def _size(vm: ManagedVm) -> str:
    cap = f", {vm.iops} IOPS" if vm.iops else ""
    return f"{vm.vcpus if vm.vcpus is not None else '?'} vCPU, {vm.memory_mib or '?'} MiB{cap}"


def _ending(vm: ManagedVm) -> str:
    """What deleting also does to the transition, for the confirmation question."""
    if vm.transition_id and vm.transition_terminal is False:
        return f" Its transition {vm.transition_id} ({vm.transition_state}) is ended first."
    return ""


def vm_rows(listing: VmListing) -> list[dict[str, Any]]:
    return [
        {"vm": vm, "size": _size(vm), "confirm": f"Delete {vm.name}?{_ending(vm)}"}
        for vm in listing.items
    ]


def vm_pages_router(service: TransitionService) -> APIRouter:
    env = _env()
    router = APIRouter(include_in_schema=False)

    @router.get("/vms", response_class=HTMLResponse)
    def vms_page() -> HTMLResponse:
        # A sync route: FastAPI runs it on a worker thread, as libvirt and the store block.
        try:
            listing = list_vms(service.pool, service.store)
            failure = None
        except VmshadowError as exc:  # the store itself failed: say so on the page
            listing, failure = VmListing(), str(exc)
        html = env.get_template("vms.html").render(
            title="VMs", rows=vm_rows(listing), errors=listing.errors, failure=failure
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    return router
