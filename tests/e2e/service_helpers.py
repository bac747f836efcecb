"""Run the real service (API + controller) as a process, as the README does."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vmshadow.config import Settings
from vmshadow.domain.shadow import Accelerator
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.shadow.accelerator import accelerator_for

E2E_ROOT = Path("/var/lib/vmshadow/e2e")


def cached_accelerator(settings: Settings, hv: LibvirtHypervisor | None = None) -> Accelerator:
    """The accelerator as the service chooses it, cached in the default data
    folder: probed once per host, so no test pays for a KVM probe boot again."""
    image = find_image(settings.images_dir)
    assert image is not None, f"no shadow image in {settings.images_dir}"
    if hv is None:
        with LibvirtHypervisor(settings.libvirt_uri) as own:
            return cached_accelerator(settings, own)
    return accelerator_for(hv, image, settings).accelerator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceRun:
    data_dir: Path
    images_dir: Path
    port: int
    env_extra: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def token(self) -> str:
        return (self.data_dir / "api-token").read_text().strip()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "VMSHADOW_CONFIG": "/nonexistent",
            "VMSHADOW_DATA_DIR": str(self.data_dir),
            "VMSHADOW_IMAGES_DIR": str(self.images_dir),
            "VMSHADOW_API_PORT": str(self.port),
            "VMSHADOW_PHASE_S": "3",
            "VMSHADOW_REFINE_ROUNDS": "1",
            "VMSHADOW_OBSERVE_S": "6",
            "VMSHADOW_POLL_S": "0.5",
            **self.env_extra,
        }

    def start(self) -> None:
        self.log = self.data_dir / f"service-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmshadow.cli", "serve"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"service did not come up: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- API ---------------------------------------------------------------------------------
    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if method != "GET" else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)

    def get(self, tid: str) -> dict[str, Any]:
        r = self.call("GET", f"/transitions/{tid}")
        r.raise_for_status()
        return dict(r.json())

    def wait_state(self, tid: str, *states: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        t: dict[str, Any] = {}
        while time.monotonic() < deadline:
            t = self.get(tid)
            if t["state"] in states:
                return t
            if t["terminal"]:
                break
            time.sleep(0.25)
        raise AssertionError(
            f"transition {tid} is {t.get('state')} ({t.get('reason')}), wanted {states}; "
            f"events: {[e['message'] for e in t.get('events', [])]}"
        )


@contextmanager
def service(settings: Settings, **env_extra: str) -> Iterator[ServiceRun]:
    data_dir = E2E_ROOT / uuid.uuid4().hex[:8]
    data_dir.mkdir(parents=True)
    os.chmod(E2E_ROOT, 0o755)
    os.chmod(data_dir, 0o755)
    run = ServiceRun(data_dir, settings.images_dir, free_port(), env_extra)
    try:
        run.start()
        yield run
    finally:
        run.stop()
        drop_pools_under(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def drop_pools_under(folder: Path) -> None:
    """Remove the libvirt storage pools over ``folder`` (a service's data dir
    gets pools of its own: they would outlive the folder otherwise)."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

    with LibvirtHypervisor("qemu:///system") as hv:
        hv.drop_pools_under(folder)
