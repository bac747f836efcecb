"""The REST API and the web UI (``vmshadow.web``): thin over ``TransitionService``.

Mutating calls need ``Authorization: Bearer <token>`` (``auth.py``); reads do
too when the service is bound off loopback (``guards.py``, which also checks
the ``Host`` header against DNS rebinding). Every error is JSON ``{"error",
"field", "reason"}`` (``errors.py``): 400 foreign Host, 401 no token, 404 not
found, 405 wrong method, 409 conflict with the state, 413 body too large, 422
invalid input naming the field, 500 internal, 503 hypervisor, database or too
many streams. Streams share one poller (``streams.py``). The routes are in
``routes/``; this module only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from fastapi import Depends, FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from vmshadow import __version__
from vmshadow.api.auth import token_dependency
from vmshadow.api.errors import install_domain_handlers, install_error_handlers
from vmshadow.api.guards import BodyLimit, HostCheck, ReadGuard, allowed_host_names, is_loopback
from vmshadow.api.openapi import ERRORS, install_docs, operation_id
from vmshadow.api.routes import API
from vmshadow.api.routes.catalogue import catalogue_router
from vmshadow.api.routes.emit import emit_router
from vmshadow.api.routes.health import health_router
from vmshadow.api.routes.images import images_router
from vmshadow.api.routes.transitions import transitions_router
from vmshadow.api.routes.vms import vms_router
from vmshadow.api.streams import StreamHub
from vmshadow.api.token import read_cookie_value
from vmshadow.controller.service import TransitionService
from vmshadow.ops.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from vmshadow.ops.metrics import Metrics
from vmshadow.web.pages import mount_ui
from vmshadow.web.vmpages import vm_pages_router

__all__ = ["API", "create_app"]


class _Measured:
    """Starlette's middleware signature (``app.add_middleware``) over ``Metrics.asgi``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = metrics.asgi(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


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
        # FastAPI's Swagger UI and ReDoc load their scripts from a CDN: no
        # request may leave the host, so /docs is our own page (openapi.py).
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
        generate_unique_id_function=operation_id,
    )
    install_docs(app)
    install_error_handlers(app)
    install_domain_handlers(app)

    # Added innermost first: the Host is checked before anything else runs.
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    if not is_loopback(settings.api.host):
        app.add_middleware(ReadGuard, token=token, cookie=read_cookie_value(token))
    allowed = allowed_host_names(settings.api.host, settings.api.allowed_hosts)
    app.add_middleware(HostCheck, allowed=allowed)

    require_token = token_dependency(token)
    hub = StreamHub(service.store, max_streams=settings.api.max_streams)
    app.state.streams = hub
    # Outermost of all: a request's latency includes every check it went through.
    metrics = Metrics(service.store, streams=lambda: hub.count)
    app.state.metrics = metrics
    app.add_middleware(_Measured, metrics=metrics)

    @app.get(
        "/metrics",
        tags=["health"],
        responses={200: {"content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    async def metrics_text() -> Response:
        """Prometheus metrics (text exposition format); a read like the others."""
        body = await anyio.to_thread.run_sync(metrics.render)
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    app.include_router(transitions_router(service, [Depends(require_token)], hub), prefix=API)
    app.include_router(catalogue_router(service, host_info), prefix=API)
    app.include_router(images_router(service, [Depends(require_token)]), prefix=API)
    app.include_router(health_router(service, host_info), prefix=API)
    app.include_router(vms_router(service, [Depends(require_token)]), prefix=API)
    app.include_router(emit_router(service), prefix=API)
    app.include_router(vm_pages_router(service))  # the web UI's /vms page
    mount_ui(
        app,
        service,
        require_token,
        read_cookie=read_cookie_value(token),
        secure_cookie=settings.api.tls_cert is not None,
    )
    return app
