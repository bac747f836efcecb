"""The children of the supervisor (``supervisor.py``): an API worker or the controller.

    python -m vmshadow.ops.roles api --fd N     # one API worker on the supervisor's socket
    python -m vmshadow.ops.roles controller     # the transition controller

Both load the settings the supervisor validated (``VMSHADOW_SUPERVISED_SETTINGS``)
so what was given on the command line reaches them unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vmshadow.config import Settings, load_settings
from vmshadow.controller.context import ShadowSessionFactory
from vmshadow.controller.engine import Controller
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.ops import logs
from vmshadow.ops.changes import ChangeSignal
from vmshadow.ops.supervisor import SETTINGS_ENV, WORKER_ENV, controller_status_file
from vmshadow.ops.wake import WakeListener
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

log = logging.getLogger(__name__)

API_KEEPALIVE_S = 75  # past a polling client's interval: reused connections stay open


def supervised_settings() -> Settings:
    path = os.environ.get(SETTINGS_ENV)
    if not path:
        return load_settings()
    return Settings.model_validate(json.loads(Path(path).read_text()))


def run_api(settings: Settings, fd: int, worker: int) -> None:
    import uvicorn

    from vmshadow.server import build, uvicorn_options

    logs.configure(settings.log)
    opts = uvicorn_options(settings)
    opts.pop("host", None)
    opts.pop("port", None)
    # Only worker 0 turns the event log into transition metrics: with every
    # worker doing it, the shared (multiprocess) counters would count N times.
    svc = build(settings, with_controller=False, metrics_feed=worker == 0)
    config = uvicorn.Config(
        svc.app,
        **opts,
        log_level=settings.log.level,
        log_config=logs.uvicorn_log_config(),
        timeout_keep_alive=API_KEEPALIVE_S,
        timeout_graceful_shutdown=10,
    )
    sock = socket.socket(fileno=fd)
    uvicorn.Server(config).run(sockets=[sock])


def write_status(settings: Settings, controller: Controller) -> None:
    """What ``/health`` shows of the controller, written where the API reads it."""
    assert controller.ctx is not None
    doc = {
        "pid": os.getpid(),
        "owner": controller.owner,
        "accelerator": controller.ctx.accelerator.value,
        "started_at": time.time(),
    }
    path = controller_status_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def run_controller(settings: Settings, shadow_session: ShadowSessionFactory | None = None) -> None:
    logs.configure(settings.log)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine = make_engine(settings.db_url)
    migrate(engine)
    store = Store(engine)
    pool = pool_from_settings(settings)
    controller = Controller(settings, store, pool=pool)
    if shadow_session is not None:
        controller.shadow_session = shadow_session
    # The API runs elsewhere: on PostgreSQL a NOTIFY of each new event wakes the
    # controller at once (a create, a confirm); on SQLite the API workers send
    # a datagram to its wake socket (``ops.wake``). It still looks every poll_s.
    changes = ChangeSignal(engine)
    changes.add(controller.wake.set)
    listener = None if changes.available else WakeListener(settings.data_dir, controller.wake.set)
    controller.start()
    write_status(settings, controller)
    changes.start()
    if listener is not None:
        listener.start()
    log.info("controller %s running", controller.owner)
    try:
        # Never an untimed wait: the kernel may hand SIGTERM to any thread (the
        # libvirt event loop's, say), and Python runs the handler only once the
        # main thread is back in the interpreter, which a lock wait without a
        # timeout never is. The controller then ignored one SIGTERM in ~25.
        while not stop.wait(0.5):
            pass
    finally:
        if listener is not None:
            listener.stop()
        changes.stop()
        controller.stop()
        controller_status_file(settings).unlink(missing_ok=True)
        pool.close()


def main(argv: Sequence[str] | None = None, *, shadow_session: Any = None) -> None:
    ap = argparse.ArgumentParser(prog="vmshadow.ops.roles")
    ap.add_argument("role", choices=["api", "controller"])
    ap.add_argument("--fd", type=int)
    args = ap.parse_args(argv)
    settings = supervised_settings()
    if args.role == "api":
        if args.fd is None:
            ap.error("api needs --fd")
        run_api(settings, args.fd, int(os.environ.get(WORKER_ENV, "0")))
    else:
        run_controller(settings, shadow_session)


if __name__ == "__main__":
    main()
