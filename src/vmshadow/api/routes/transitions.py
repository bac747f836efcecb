"""Transitions and the decisions on them: thin over ``TransitionService``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.params import Depends
from fastapi.responses import Response
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from vmshadow.api.errors import error_response
from vmshadow.api.listing import MAX_OFFSET, MAX_PAGE, list_page
from vmshadow.api.openapi import STREAM_RESPONSE
from vmshadow.api.routes import API
from vmshadow.api.schemas import CreateTransition, Override
from vmshadow.api.streams import StreamHub, StreamsFull
from vmshadow.controller.guestopts import GuestRequest
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind, TransitionState


def transitions_router(
    service: TransitionService, auth: Sequence[Depends], hub: StreamHub
) -> APIRouter:
    """The routes under ``/transitions``; ``auth`` guards every one that changes anything."""
    router = APIRouter()
    auth = list(auth)
    run = anyio.to_thread.run_sync  # the service and the store are blocking

    @router.post("/transitions", status_code=201, dependencies=auth, tags=["transitions"])
    async def create(body: CreateTransition, response: Response) -> dict[str, Any]:
        req = NewTransition(
            kind=TransitionKind(body.kind),
            vm_name=body.vm_name,
            profile=body.profile,
            requested=Allocation(**body.requested.model_dump()) if body.requested else None,
            image=body.image,
            load=body.load,
            scheduled_at=body.scheduled_at,
            fast_launch=body.fast_launch,
            policy=body.policy,
            guest=GuestRequest(
                network=body.network,
                user=body.user,
                ssh_keys=tuple(body.ssh_keys),
                user_data=body.user_data,
                disk_gib=body.disk_gib,
            ),
        )
        row = await run(service.create, req)
        response.headers["Location"] = f"{API}/transitions/{row.id}"
        return await run(service.view, row)

    @router.get("/transitions", tags=["transitions"])
    async def list_transitions(
        state: TransitionState | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
        offset: Annotated[
            int, Query(ge=0, le=MAX_OFFSET, description="rows to skip, newest first")
        ] = 0,
        name: Annotated[
            str | None, Query(max_length=63, description="part of the VM's name, any case")
        ] = None,
        cursor: Annotated[
            str | None,
            Query(max_length=200, description="where the page starts: from the `next` link"),
        ] = None,
        *,
        request: Request,
        response: Response,
    ) -> list[dict[str, Any]]:
        """Newest first. When more rows follow, the ``Link`` header has the next
        page (``rel="next"``, the same filters and a cursor) and ``X-Next-Cursor``
        its cursor alone."""

        def go() -> tuple[list[dict[str, Any]], str | None]:
            page = list_page(
                service.store, state=state, name=name, offset=offset, limit=limit, cursor=cursor
            )
            return [service.view(r) for r in page.rows], page.next_cursor

        docs, following = await run(go)
        if following is not None:
            keep = {k: v for k, v in request.query_params.items() if k not in ("cursor", "offset")}
            url = request.url.replace(query=urlencode({**keep, "cursor": following}))
            response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
            response.headers["X-Next-Cursor"] = following
        return docs

    @router.get("/transitions/{tid}", tags=["transitions"])
    async def get(tid: str) -> dict[str, Any]:
        return await run(lambda: service.document(tid))

    @router.post("/transitions/{tid}/cancel", dependencies=auth, tags=["transitions"])
    async def cancel(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.cancel(tid)))

    @router.post("/transitions/{tid}/confirm", dependencies=auth, tags=["decisions"])
    async def confirm(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.confirm(tid)))

    @router.post("/transitions/{tid}/override/review", tags=["decisions"])
    async def review(tid: str, body: Override) -> dict[str, Any]:
        chosen = Allocation(body.vcpus, body.memory_mib, body.iops)
        return await run(service.review_override, tid, chosen)

    @router.post("/transitions/{tid}/override", dependencies=auth, tags=["decisions"])
    async def override(tid: str, body: Override) -> dict[str, Any]:
        chosen = Allocation(body.vcpus, body.memory_mib, body.iops)
        return await run(
            lambda: service.view(
                service.override(tid, chosen, acknowledge_risk=body.acknowledge_risk)
            )
        )

    @router.post("/transitions/{tid}/fast-launch", dependencies=auth, tags=["decisions"])
    async def fast_launch(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.fast_launch(tid)))

    @router.get(
        "/transitions/{tid}/stream",
        tags=["transitions"],
        response_class=EventSourceResponse,
        responses=STREAM_RESPONSE,
    )
    async def stream(tid: str) -> Response:
        await run(service.store.get, tid)  # 404 before the stream starts
        try:
            sub = hub.reserve(tid)
        except StreamsFull:
            return error_response(
                503,
                f"too many live streams (api.max_streams = {hub.max_streams}); try again later",
                None,
                "the service's stream limit is reached",
                headers={"Retry-After": "5"},
            )
        # The generator gives the slot back when it ends; the background task
        # also does if the client left before the generator ever ran.
        return EventSourceResponse(
            hub.messages(sub), ping=15, background=BackgroundTask(hub.release, sub)
        )

    return router
