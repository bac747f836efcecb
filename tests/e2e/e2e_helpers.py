"""Helpers for the end-to-end tests (imported by them; fixtures live in conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vmshadow.domain.shadow import SHADOW_NAME_PREFIX
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

REPO = Path(__file__).resolve().parents[2]


def shadow_domains(hv: LibvirtHypervisor) -> set[str]:
    return {name for name, _ in hv.list_shadows() if name.startswith(SHADOW_NAME_PREFIX)}


def owned_by(hv: LibvirtHypervisor, pid: int) -> list[str]:
    return [name for name, meta in hv.list_shadows() if meta.owner.endswith(f":{pid}")]


def wait_for(what: str, check: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "VMSHADOW_CONFIG": "/nonexistent", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "vmshadow.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # also closes the pipes
