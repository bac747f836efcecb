"""The REST API and the web UI (``ui.py``): thin over ``TransitionService``.

Mutating calls need ``Authorization: Bearer <token>``; reads do too when the
service is bound off loopback (``guards.py``, which also checks the ``Host``
header against DNS rebinding). Every error is JSON ``{"error", "field",
"reason"}`` (``errors.py``): 400 foreign Host, 401 no token, 404 not found,
405 wrong method, 409 conflict with the state, 413 body too large, 422
invalid input naming the field, 500 internal, 503 hypervisor or too many
streams. Streams share one poller (``streams.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from vmshadow import __version__
from vmshadow.api.errors import error_response, install_error_handlers
from vmshadow.api.guards import (
    BodyLimit,
    HostCheck,
    ReadGuard,
    allowed_host_names,
    is_loopback,
)
from vmshadow.api.schemas import CreateTransition, Override
from vmshadow.api.streams import StreamHub, StreamsFull
from vmshadow.api.token import read_cookie_value, token_matches
from vmshadow.api.ui import mount_ui
from vmshadow.controller.service import NewTransition, TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import (
    ConfigError,
    ConflictError,
    HypervisorError,
    NotFoundError,
    RiskNotAcknowledged,
    StoreError,
    VmshadowError,
)
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.image.builder import list_images
from vmshadow.workloads.profiles import builtin_profiles
from vmshadow.workloads.smoke import smoke_phases

API = "/api/v1"


def create_app(
    service: TransitionService,
    token: str,
    *,
    host_info: dict[str, Any],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    settings = service.settings
    app = FastAPI(
        lifespan=lifespan,
        title="vmshadow",
        version=__version__,
        description="Right-size VMs before they launch by profiling a tiny shadow VM.",
        # Swagger UI and ReDoc load their scripts from a CDN: no request may
        # leave the host, so only the schema itself is served.
        docs_url=None,
        redoc_url=None,
    )

    # -- errors ---------------------------------------------------------------------------
    err = error_response
    install_error_handlers(app)

    @app.exception_handler(ConfigError)
    async def _config(_r: Request, exc: ConfigError) -> JSONResponse:
        return err(422, str(exc), exc.field, exc.reason)

    @app.exception_handler(NotFoundError)
    async def _missing(_r: Request, exc: NotFoundError) -> JSONResponse:
        return err(404, str(exc))

    @app.exception_handler(RiskNotAcknowledged)
    async def _risk(_r: Request, exc: RiskNotAcknowledged) -> JSONResponse:
        return err(409, str(exc), "acknowledge_risk", warnings=exc.warnings)

    @app.exception_handler(ConflictError)
    async def _conflict(_r: Request, exc: ConflictError) -> JSONResponse:
        msg = str(exc)
        field = msg.split(":", 1)[0] if msg.startswith("vm_name:") else None
        return err(409, msg, field)

    @app.exception_handler(HypervisorError)
    async def _hypervisor(_r: Request, exc: HypervisorError) -> JSONResponse:
        return err(503, f"hypervisor: {exc}")

    app.add_exception_handler(StoreError, lambda _r, exc: err(503, str(exc)))

    @app.exception_handler(VmshadowError)
    async def _other(_r: Request, exc: VmshadowError) -> JSONResponse:
        return err(400, str(exc))

    # Added innermost first: the Host is checked before anything else runs.
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    if not is_loopback(settings.api.host):
        app.add_middleware(ReadGuard, token=token, cookie=read_cookie_value(token))
    allowed = allowed_host_names(settings.api.host, settings.api.allowed_hosts)
    app.add_middleware(HostCheck, allowed=allowed)

    # -- auth -----------------------------------------------------------------------------
    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        presented = None
        if authorization and authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        if not token_matches(token, presented):
            raise _Unauthorized()

    @app.exception_handler(_Unauthorized)
    async def _unauth(_r: Request, _exc: _Unauthorized) -> JSONResponse:
        resp = err(401, "missing or wrong bearer token (see the api-token file in the data folder)")
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    auth = [Depends(require_token)]
    run = anyio.to_thread.run_sync  # the service and the store are blocking

    # -- transitions ------------------------------------------------------------------------
    @app.post(f"{API}/transitions", status_code=201, dependencies=auth, tags=["transitions"])
    async def create(body: CreateTransition) -> dict[str, Any]:
        req = NewTransition(
            kind=TransitionKind(body.kind),
            vm_name=body.vm_name,
            profile=body.profile,
            requested=Allocation(**body.requested.model_dump()) if body.requested else None,
            image=body.image,
            load=body.load,
            scheduled_at=body.scheduled_at,
            fast_launch=body.fast_launch,
        )
        row = await run(service.create, req)
        return await run(service.view, row)

    @app.get(f"{API}/transitions", tags=["transitions"])
    async def list_transitions(
        state: TransitionState | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200
    ) -> list[dict[str, Any]]:
        def go() -> list[dict[str, Any]]:
            rows = service.store.list_transitions(states=[state] if state else None, limit=limit)
            return [service.view(r) for r in rows]

        return await run(go)

    @app.get(f"{API}/transitions/{{tid}}", tags=["transitions"])
    async def get(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.store.get(tid), with_events=True))

    @app.post(f"{API}/transitions/{{tid}}/cancel", dependencies=auth, tags=["transitions"])
    async def cancel(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.cancel(tid)))

    @app.post(f"{API}/transitions/{{tid}}/confirm", dependencies=auth, tags=["decisions"])
    async def confirm(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.confirm(tid)))

    @app.post(f"{API}/transitions/{{tid}}/override/review", tags=["decisions"])
    async def review(tid: str, body: Override) -> dict[str, Any]:
        chosen = Allocation(body.vcpus, body.memory_mib, body.iops)
        return await run(service.review_override, tid, chosen)

    @app.post(f"{API}/transitions/{{tid}}/override", dependencies=auth, tags=["decisions"])
    async def override(tid: str, body: Override) -> dict[str, Any]:
        chosen = Allocation(body.vcpus, body.memory_mib, body.iops)
        return await run(
            lambda: service.view(
                service.override(tid, chosen, acknowledge_risk=body.acknowledge_risk)
            )
        )

    @app.post(f"{API}/transitions/{{tid}}/fast-launch", dependencies=auth, tags=["decisions"])
    async def fast_launch(tid: str) -> dict[str, Any]:
        return await run(lambda: service.view(service.fast_launch(tid)))

    hub = StreamHub(service.store, max_streams=settings.api.max_streams)
    app.state.streams = hub

    @app.get(f"{API}/transitions/{{tid}}/stream", tags=["transitions"])
    async def stream(tid: str) -> Response:
        await run(service.store.get, tid)  # 404 before the stream starts
        try:
            sub = hub.reserve(tid)
        except StreamsFull:
            return err(
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

    # -- catalogue ----------------------------------------------------------------------------
    @app.get(f"{API}/profiles", tags=["catalogue"])
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

    @app.get(f"{API}/images", tags=["catalogue"])
    async def images() -> list[dict[str, Any]]:
        return [
            {
                "digest": img.directory.name,
                "complete": img.complete(),
                "built_at": img.manifest.get("built_at"),
                "kernel": img.manifest.get("kernel_release"),
            }
            for img in list_images(settings.images_dir)
        ]

    @app.get(f"{API}/hosts", tags=["catalogue"])
    async def hosts() -> list[dict[str, Any]]:
        def go() -> list[dict[str, Any]]:
            # The pool's first host also carries the service's facts (versions,
            # accelerator); every host its capacity and what vmshadow booked there.
            hosts = service.hosts()
            with service._hv() as hv:
                hosts[0] = {**hosts[0], **hv.host_resources(), **hv.versions(), **host_info}
            return hosts

        return await run(go)

    @app.get(f"{API}/health", tags=["catalogue"])
    async def health() -> dict[str, Any]:
        def go() -> dict[str, Any]:
            service.store.list_transitions(limit=1)
            return {"status": "ok", "version": __version__, **host_info}

        return await run(go)

    mount_ui(
        app,
        service,
        require_token,
        read_cookie=read_cookie_value(token),
        secure_cookie=settings.api.tls_cert is not None,
    )
    return app


class _Unauthorized(Exception):
    pass
