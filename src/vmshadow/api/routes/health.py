"""Whether the service answers and its database with it."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter

from vmshadow import __version__
from vmshadow.controller.service import TransitionService


def health_router(service: TransitionService, host_info: dict[str, Any]) -> APIRouter:
    router = APIRouter(tags=["catalogue"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        def go() -> dict[str, Any]:
            # One cheap query: a database that refuses answers 503 (StoreError).
            service.store.list_transitions(limit=1)
            return {"status": "ok", "version": __version__, **host_info}

        return await anyio.to_thread.run_sync(go)

    return router
