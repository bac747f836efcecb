"""A transition's recommendation in another tool's form (``vmshadow.emit``).

``GET /transitions/{id}/recommendation/{format}`` answers ``text/plain``:
virt-install arguments, virsh commands, a Terraform block, a KubeVirt
instance type, an OpenStack flavor command. Like the other reads it needs no
token on loopback. A transition without a prediction yet is a 409 naming
its state; an unknown format a 422 naming ``format`` and the known ones.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path
from fastapi.responses import PlainTextResponse

from vmshadow.controller.service import TransitionService
from vmshadow.domain.errors import ConfigError, ConflictError
from vmshadow.emit import FORMATS, emit, from_view

FORMAT_DOC = "one of: " + ", ".join(FORMATS)


def emit_router(service: TransitionService) -> APIRouter:
    router = APIRouter(tags=["transitions"])
    run = anyio.to_thread.run_sync

    @router.get(
        "/transitions/{tid}/recommendation/{fmt}",
        # Errors stay JSON: only the 200 answer is text (no response_class).
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def recommendation(
        tid: str, fmt: Annotated[str, Path(description=FORMAT_DOC, max_length=32)]
    ) -> PlainTextResponse:
        """The recommendation (the decided size once decided) as ``fmt`` takes it."""
        if fmt not in FORMATS:
            raise ConfigError("format", f"no format {fmt!r}; {FORMAT_DOC}")
        doc = await run(lambda: service.view(service.store.get(tid)))
        try:
            rec = from_view(doc)
        except ConfigError as exc:
            if exc.field == "state":
                raise ConflictError(exc.reason) from exc
            raise
        return PlainTextResponse(emit(fmt, rec))

    return router
