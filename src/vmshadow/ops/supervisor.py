"""``vmshadow serve``: one supervisor over the API workers and the controller.

The API and the controller used to share one Python process: the API waited
on the controller's CPU (the GIL) and on its database pool, and at 1,000
concurrent transitions its p99 reached a minute. Here each runs in processes
of its own, started and watched by this small supervisor:

- ``api-0`` ... ``api-N-1``: the REST API and web UI (``api.workers``), all
  accepting on one listening socket the supervisor binds, so a restarted
  worker takes up the same port and the others serve meanwhile;
- ``controller``: the transition controller, which alone drives libvirt.

The children talk only through the database (leases, the event log) and a
few files in ``<data_dir>/supervisor``: the settings they run with, the
controller's status (its accelerator, for ``/health``) and prometheus-client's
multiprocess folder. A child that dies is restarted with a backoff and the
restart is logged; SIGTERM or SIGINT stops them all, the controller with its
graceful time to destroy its shadows. Each child gets SIGKILL should the
supervisor itself die (``PR_SET_PDEATHSIG``), so no child outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmshadow.config import Settings

log = logging.getLogger(__name__)

Role = Literal["all", "api", "controller"]
# The command that runs one child: (role, extra arguments) -> argv.
Command = Callable[[str, list[str]], list[str]]

SETTINGS_ENV = "VMSHADOW_SUPERVISED_SETTINGS"
WORKER_ENV = "VMSHADOW_API_WORKER"
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STEADY_S = 60.0  # a child up this long starts its backoff afresh
API_STOP_S = 15.0
CONTROLLER_STOP_S = 75.0  # the controller's own 60 s to end its workers, and a margin
READY_S = 300.0  # a KVM probe boot may take a while on a busy host
PR_SET_PDEATHSIG = 1


def default_command(role: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "vmshadow.ops.roles", role, *extra]


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "supervisor"


def prometheus_dir(settings: Settings) -> Path:
    return run_dir(settings) / "prometheus"


def controller_status_file(settings: Settings) -> Path:
    return run_dir(settings) / "controller.json"


def read_status(settings: Settings) -> dict[str, Any]:
    """The controller's status for ``/health``: ``controller`` false when none runs here."""
    try:
        doc = json.loads(controller_status_file(settings).read_text())
        os.kill(int(doc["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return {"controller": False}
    return {"controller": True, "accelerator": doc.get("accelerator")}


def write_settings(settings: Settings, path: Path) -> None:
    """The settings as validated here, for the children to load unchanged."""
    doc = settings.model_dump(mode="json", by_alias=True)
    doc["client"]["token"] = None  # a client's token: no child needs it
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL when the supervisor dies,
    # like a crash of the whole service, never a child left holding the port.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def bind_socket(settings: Settings) -> socket.socket:
    host, port = settings.api.host, settings.api.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class Child:
    name: str
    role: str
    argv: list[str]
    stop_s: float
    env: dict[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, settings: Settings, role: Role = "all", *, command: Command | None = None):
        self.settings = settings
        self.role = role
        self.command = command or default_command
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self._sock: socket.socket | None = None

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """The private folder, the settings file, a fresh metrics folder, the socket."""
        folder = run_dir(self.settings)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        write_settings(self.settings, folder / "settings.json")
        # Files of earlier runs would add their dead workers' counts to this run's.
        shutil.rmtree(prometheus_dir(self.settings), ignore_errors=True)
        prometheus_dir(self.settings).mkdir()
        env = {
            SETTINGS_ENV: str(folder / "settings.json"),
            "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir(self.settings)),
        }
        if self.role in ("all", "api"):
            self._sock = bind_socket(self.settings)
            fd = self._sock.fileno()
            for i in range(self.settings.api.workers):
                self.children.append(
                    Child(
                        f"api-{i}",
                        "api",
                        self.command("api", ["--fd", str(fd)]),
                        API_STOP_S,
                        {**env, WORKER_ENV: str(i)},
                        (fd,),
                    )
                )
        if self.role in ("all", "controller"):
            controller_status_file(self.settings).unlink(missing_ok=True)
            self.children.append(
                Child(
                    "controller",
                    "controller",
                    self.command("controller", []),
                    CONTROLLER_STOP_S,
                    env,
                )
            )

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.argv,
            env={**os.environ, **child.env},
            pass_fds=child.pass_fds,
            preexec_fn=_die_with_parent,  # only prctl, before exec
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started %s (pid %s)", child.name, child.proc.pid)

    # -- running ---------------------------------------------------------------------------
    def run(self) -> int:
        """Start every child, keep them up, stop them all on SIGTERM/SIGINT."""
        if not self.children:
            self.prepare()
        previous = {
            sig: signal.signal(sig, lambda *_: self.stopping.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            # The controller first: it reconciles (reaps what a crash left) before
            # the API answers, so a health check that passes means a consistent
            # state and shows the controller's accelerator.
            first = [c for c in self.children if c.role == "controller"]
            for child in first:
                self._spawn(child)
                self._wait_ready(child)
            for child in self.children:
                if child not in first:
                    self._spawn(child)
            while not self.stopping.wait(0.2):
                self.check()
        finally:
            self.stop_children()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._sock is not None:
                self._sock.close()
        return 0

    def _wait_ready(self, child: Child) -> None:
        status = controller_status_file(self.settings)
        deadline = time.monotonic() + READY_S
        while not status.exists() and time.monotonic() < deadline:
            if self.stopping.wait(0.1) or (
                child.proc is not None and child.proc.poll() is not None
            ):
                return  # check() restarts it and logs why; the API serves meanwhile
        if not status.exists():
            log.warning("the controller is not ready after %.0f s; starting the API", READY_S)

    def check(self) -> None:
        """Notice dead children and restart each once its backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is None:
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if child.restart_at is None:
                self._mark_dead(child.proc.pid)
                up = now - child.started_at
                child.failures = 1 if up >= STEADY_S else child.failures + 1
                delay = BACKOFF_S[min(child.failures, len(BACKOFF_S)) - 1]
                child.restart_at = now + delay
                log.error(
                    "%s (pid %s) exited with %s after %.1f s; restarting in %.1f s",
                    child.name,
                    child.proc.pid,
                    _describe(code),
                    up,
                    delay,
                )
            elif now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def _mark_dead(self, pid: int) -> None:
        # A dead worker's live gauges (the SSE streams it held) must not count.
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(prometheus_dir(self.settings)))  # type: ignore[no-untyped-call]

    def stop_children(self) -> None:
        """TERM to all at once, then wait for each up to its time, then KILL."""
        alive = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in alive:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        for child in alive:
            assert child.proc is not None
            try:
                child.proc.wait(child.stop_s)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0f s: killed", child.name, child.stop_s)
                child.proc.kill()
                child.proc.wait()
        for child in self.children:
            if child.proc is not None:
                self._mark_dead(child.proc.pid)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
