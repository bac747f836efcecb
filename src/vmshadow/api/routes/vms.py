"""The VMs vmshadow launched: list, show, delete (``usecases/vms.py``).

Reads answer as the other GETs do (no token on loopback); delete needs the
token. A domain vmshadow did not make is answered 404, naming it, and never
touched; an unreachable host is listed under ``errors`` beside the VMs of the
hosts that answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.params import Depends
from fastapi.responses import Response

from vmshadow.controller.service import TransitionService
from vmshadow.usecases.vms import delete_vm, get_vm, list_vms


def vms_router(service: TransitionService, auth: Sequence[Depends]) -> APIRouter:
    """The routes under ``/vms``; ``auth`` guards delete."""
    router = APIRouter(tags=["vms"])
    run = anyio.to_thread.run_sync  # libvirt and the store are blocking

    @router.get("/vms")
    async def list_all() -> dict[str, Any]:
        """Every VM vmshadow launched, on every host: ``items``, and ``errors``
        for each host (or VM) that could not be read."""
        listing = await run(list_vms, service.pool, service.store)
        return listing.as_dict()

    @router.get("/vms/{name}")
    async def show(name: str) -> dict[str, Any]:
        vm = await run(get_vm, service.pool, service.store, name)
        return vm.as_dict()

    @router.delete("/vms/{name}", status_code=204, dependencies=list(auth))
    async def delete(name: str) -> Response:
        """End the VM's unfinished transitions, then destroy the VM and remove its disks."""
        await run(lambda: delete_vm(service.pool, service.store, name, cancel=service.cancel))
        return Response(status_code=204)

    return router
