"""Wires the service together: store, controller, API; ``serve`` runs it supervised.

``build`` assembles one process's app, with the controller in it or not
(tests build it in-process both ways). ``serve`` is ``vmshadow serve``: a
supervisor (``ops/supervisor.py``) runs the API workers and the controller
as processes of their own (``ops/roles.py``), or one of them by ``role``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import FastAPI

from vmshadow.api.app import create_app
from vmshadow.api.guards import is_loopback
from vmshadow.api.token import ensure_token
from vmshadow.config import Settings
from vmshadow.controller.engine import Controller
from vmshadow.controller.service import TransitionService
from vmshadow.domain.errors import ConfigError
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.ops import logs
from vmshadow.ops.changes import ChangeSignal
from vmshadow.ops.feed import EventFeed
from vmshadow.ops.supervisor import Role, Supervisor, read_status
from vmshadow.ops.wake import poke
from vmshadow.ops.webhooks import WebhookDeliverer
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

log = logging.getLogger(__name__)


@dataclass
class Service:
    app: FastAPI
    controller: Controller | None
    store: Store
    token: str
    token_created: bool


STATUS_REFRESH_S = 2.0


def build(
    settings: Settings, *, with_controller: bool = True, metrics_feed: bool = True
) -> Service:
    """The app of one process; ``metrics_feed``: whether this process turns the
    event log into transition metrics (one API worker of several does)."""
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    pool = pool_from_settings(settings)
    controller = Controller(settings, store, pool=pool) if with_controller else None
    changes = ChangeSignal(engine)
    wake: Callable[[], None] | None = None
    if controller is not None:
        wake = controller.wake.set
    elif not changes.available:
        # The controller is another process and SQLite has no NOTIFY: wake it
        # through its socket rather than leave the change to its next poll.
        def wake() -> None:
            poke(settings.data_dir)

    service = TransitionService(settings, store, pool=pool, on_change=wake)
    token, created = ensure_token(settings.token_file)
    # Without a controller in this process, what /health says of one is what
    # the supervised controller recorded (its accelerator), re-read as it changes.
    info: dict[str, object] = {"controller": True} if with_controller else read_status(settings)
    app: FastAPI | None = None
    feed = EventFeed(store)
    changes.add(feed.wake)
    if controller is not None:
        changes.add(controller.wake.set)
    webhooks = (
        WebhookDeliverer(settings.webhooks, store, settings.data_dir)
        if settings.webhooks.url is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The controller reconciles (reaps what a crash left) before the API
        # answers, so a health check that passes means a consistent state.
        if controller is not None:
            await anyio.to_thread.run_sync(controller.start)
            assert controller.ctx is not None
            info["accelerator"] = controller.ctx.accelerator.value
        assert app is not None
        if metrics_feed:
            feed.subscribe(app.state.metrics.on_event)
        feed.start()
        hub = app.state.streams
        changes.add(hub.wake)
        changes.start()
        if webhooks is not None:
            await anyio.to_thread.run_sync(webhooks.start)
        refresh = None if with_controller else asyncio.create_task(_refresh_status(settings, info))
        try:
            yield
        finally:
            if refresh is not None:
                refresh.cancel()
            await anyio.to_thread.run_sync(changes.stop)
            if webhooks is not None:
                await anyio.to_thread.run_sync(webhooks.stop)
            await anyio.to_thread.run_sync(feed.stop)
            if controller is not None:
                await anyio.to_thread.run_sync(controller.stop)
            pool.close()

    app = create_app(service, token, host_info=info, lifespan=lifespan)
    return Service(app, controller, store, token, created)


async def _refresh_status(settings: Settings, info: dict[str, object]) -> None:
    while True:
        await asyncio.sleep(STATUS_REFRESH_S)
        info.clear()
        info.update(read_status(settings))


def base_url(settings: Settings) -> str:
    scheme = "https" if settings.api.tls_cert else "http"
    host = settings.api.host
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{settings.api.port}"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn binds; refuses a bind off loopback that would send the token in clear."""
    api = settings.api
    if (api.tls_cert is None) != (api.tls_key is None):
        missing = "api.tls_key" if api.tls_key is None else "api.tls_cert"
        raise ConfigError(missing, "api.tls_cert and api.tls_key go together")
    opts: dict[str, Any] = {"host": api.host, "port": api.port}
    if api.tls_cert is not None and api.tls_key is not None:
        opts.update(ssl_certfile=str(api.tls_cert), ssl_keyfile=str(api.tls_key))
    if is_loopback(api.host):
        return opts
    if api.tls_cert is None:
        if not api.allow_plaintext:
            raise ConfigError(
                "api.tls_cert",
                f"binding {api.host} without TLS would send the API token in clear; set "
                "api.tls_cert and api.tls_key, or api.allow_plaintext = true to accept that",
            )
        log.warning(
            "API on %s without TLS (api.allow_plaintext): the token crosses the network in clear",
            api.host,
        )
    else:
        log.warning("API on %s is reachable from the network: reads need the token too", api.host)
    return opts


def serve(settings: Settings, *, role: Role = "all", announce: bool = True) -> None:
    logs.configure(settings.log)
    if role != "controller":
        uvicorn_options(settings)  # refuse a bad bind before anything starts
    # Once here, not by each child at once: SQLite would have them race.
    migrate(make_engine(settings.db_url))
    _token, created = ensure_token(settings.token_file)
    if announce and role != "controller":
        url = base_url(settings)
        print(f"vmshadow API on {url}/api/v1 (OpenAPI schema at {url}/openapi.json)", flush=True)
        # Never the token itself: stdout ends up in logs that others can read.
        made = "made now" if created else "kept"
        print(f"API token ({made}): in {settings.token_file} (mode 0600)", flush=True)
        print(
            f"Web UI: {url}/ ; a signed-in link: `vmshadow token show --link`",
            flush=True,
        )
    Supervisor(settings, role).run()
