"""What a transition can name: profiles, shadow images, hosts and their limits.

The image store's images are ``routes/images.py`` (``/images``); the shadow
base images built here are ``/shadow-images``.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter

from vmshadow.controller.service import TransitionService
from vmshadow.image.builder import list_images
from vmshadow.workloads.profiles import builtin_profiles
from vmshadow.workloads.smoke import smoke_phases


def catalogue_router(service: TransitionService, host_info: dict[str, Any]) -> APIRouter:
    router = APIRouter(tags=["catalogue"])
    settings = service.settings
    run = anyio.to_thread.run_sync  # the service and libvirt are blocking

    @router.get("/profiles")
    async def profiles() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "name": "smoke",
                "unit": None,
                "description": "fixed check of every measurement: CPU, memory and random 4k I/O",
                "phases": [
                    {"phase_id": p.phase_id, "kind": p.kind, "duration_s": p.duration_s}
                    for p in smoke_phases(settings.controller.phase_s)
                ],
            }
        ]
        for name, prof in sorted(builtin_profiles().items()):
            out.append(
                {
                    "name": name,
                    "unit": prof.unit,
                    "description": prof.description,
                    "per_unit": prof.per_unit.model_dump(),
                    "ramp": prof.ramp,
                }
            )
        return out

    @router.get("/shadow-images")
    async def shadow_images() -> list[dict[str, Any]]:
        return [
            {
                "digest": img.directory.name,
                "complete": img.complete(),
                "built_at": img.manifest.get("built_at"),
                "kernel": img.manifest.get("kernel_release"),
            }
            for img in list_images(settings.images_dir)
        ]

    @router.get("/hosts")
    async def hosts() -> list[dict[str, Any]]:
        def go() -> list[dict[str, Any]]:
            # The pool's first host also carries the service's facts (versions,
            # accelerator); every host its capacity and what vmshadow booked there.
            hosts = service.hosts()
            with service._hv() as hv:
                hosts[0] = {**hosts[0], **hv.host_resources(), **hv.versions(), **host_info}
            return hosts

        return await run(go)

    return router
