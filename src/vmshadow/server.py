"""Wires the service together: store, controller, API, and runs it under uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import uvicorn
from fastapi import FastAPI

from vmshadow.api.app import create_app
from vmshadow.api.token import ensure_token
from vmshadow.config import Settings
from vmshadow.controller.engine import Controller
from vmshadow.controller.service import TransitionService
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store


@dataclass
class Service:
    app: FastAPI
    controller: Controller | None
    store: Store
    token: str
    token_created: bool


def build(settings: Settings, *, with_controller: bool = True) -> Service:
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    pool = pool_from_settings(settings)
    controller = Controller(settings, store, pool=pool) if with_controller else None
    service = TransitionService(
        settings, store, pool=pool, on_change=(controller.wake.set if controller else None)
    )
    token, created = ensure_token(settings.token_file)
    info: dict[str, object] = {"controller": with_controller}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The controller reconciles (reaps what a crash left) before the API
        # answers, so a health check that passes means a consistent state.
        if controller is not None:
            await anyio.to_thread.run_sync(controller.start)
            assert controller.ctx is not None
            info["accelerator"] = controller.ctx.accelerator.value
        try:
            yield
        finally:
            if controller is not None:
                await anyio.to_thread.run_sync(controller.stop)
            pool.close()

    app = create_app(service, token, host_info=info, lifespan=lifespan)
    return Service(app, controller, store, token, created)


def serve(settings: Settings, *, announce: bool = True) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    svc = build(settings)
    if announce:
        url = f"http://{settings.api.host}:{settings.api.port}"
        print(f"vmshadow API on {url}/api/v1 (OpenAPI schema at {url}/openapi.json)", flush=True)
        if svc.token_created:
            print(
                f"API token (shown once; also in {settings.token_file}, mode 0600):\n"
                f"  {svc.token}\n"
                # A URL fragment is never sent to the server: the sign-in page reads it.
                f"Web UI, signed in: {url}/login#token={svc.token}",
                flush=True,
            )
        else:
            print(f"API token: in {settings.token_file}", flush=True)
            print(f"Web UI: {url}/ (sign in with that token)", flush=True)
    uvicorn.run(
        svc.app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="info",
        # The controller's threads hold shadows; give them time to clean up.
        timeout_graceful_shutdown=60,
    )
