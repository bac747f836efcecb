"""``vmshadow doctor``: what this host offers a shadow, and what is missing.

Each check is a row (name, ok, status, detail, fix); the host is fit when all
pass. ``status`` is ``ok``, ``warn`` or ``fail``: a warning (ok stays true)
says something worth knowing that does not stop vmshadow, such as a busy host.
A hypervisor is normally busy, and a 0.5 s sample of "0.2 of 2 CPUs idle"
made ``./scripts/run`` refuse to start the service: capacity only warns now,
and it is measured on the configured libvirt host (``hypervisor.nodestats``),
not on this machine's ``/proc``, which says nothing about a remote URI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from vmshadow.config import Settings
from vmshadow.domain.errors import VmshadowError
from vmshadow.hypervisor import nodestats
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.shadow.accelerator import accelerator_for

SETUP_HINT = "run ./scripts/setup (the README's set-up) and try again"


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    status = "ok" if ok else "fail"
    return {"name": name, "ok": ok, "status": status, "detail": detail, "fix": "" if ok else fix}


def _warn(name: str, detail: str, hint: str) -> dict[str, Any]:
    return {"name": name, "ok": True, "status": "warn", "detail": detail, "fix": hint}


def _capacity(settings: Settings, res: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """Room for a shadow on the libvirt host: a warning when short, never a failure."""
    try:
        load = nodestats.measure(settings.libvirt_uri)
    except VmshadowError as exc:
        return _warn("host capacity", f"not measured: {exc}", "")
    idle = load.idle_cpus
    # Drivers without memory stats still report free memory through the node info.
    free_mib = load.free_memory_mib if load.free_memory_mib is not None else res["free_memory_mib"]
    facts.update(free_cpus=None if idle is None else round(idle, 2), free_memory_mib=free_mib)
    need = settings.shadow.memory_mib + 256
    cpu_text = (
        f"CPU idle not reported by {settings.libvirt_uri}"
        if idle is None
        else f"{idle:.1f} of {load.cpus} CPUs idle"
    )
    detail = f"{cpu_text}, {free_mib} of {res['memory_mib']} MiB free"
    short = [
        what
        for what, low in (("memory", free_mib < need), ("CPU", idle is not None and idle < 0.5))
        if low
    ]
    if not short:
        return _check("host capacity", True, detail)
    return _warn(
        "host capacity",
        detail,
        f"short of {' and '.join(short)} right now: a shadow needs about {need} MiB free "
        "memory and half a CPU, and waits for room (the service still starts)",
    )


def run_doctor(settings: Settings) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    facts: dict[str, Any] = {"uri": settings.libvirt_uri, "data_dir": str(settings.data_dir)}
    for tool in ("qemu-img", "qemu-system-x86_64"):
        path = shutil.which(tool) or (
            f"/usr/bin/{tool}" if os.path.exists(f"/usr/bin/{tool}") else None
        )
        checks.append(
            _check(tool, path is not None, path or "not found", f"install QEMU: {SETUP_HINT}")
        )
    try:
        hv = LibvirtHypervisor(settings.libvirt_uri)
    except VmshadowError as exc:
        checks.append(
            _check(
                "libvirt",
                False,
                str(exc),
                f"libvirtd is not reachable at {settings.libvirt_uri}: {SETUP_HINT}",
            )
        )
        return {"ok": False, "facts": facts, "checks": checks}
    with hv:
        versions = hv.versions()
        facts.update(versions)
        checks.append(
            _check(
                "libvirt",
                True,
                f"libvirt {versions['libvirt']}, "
                f"{versions['driver']} {versions['hypervisor']} at {hv.uri}",
            )
        )
        res = hv.host_resources()
        facts.update(res)
        checks.append(_capacity(settings, res, facts))
        image = _safe(lambda: find_image(settings.images_dir))
        if isinstance(image, str) or image is None:
            detail = image if isinstance(image, str) else f"not built in {settings.images_dir}"
            checks.append(_check("shadow image", False, detail, "run `vmshadow image build`"))
            return {"ok": False, "facts": facts, "checks": checks}
        facts["image"] = str(image.directory)
        size_mib = image.size_bytes() / 2**20
        checks.append(
            _check(
                "shadow image",
                True,
                f"{image.directory.name}: {size_mib:.0f} MiB, kernel "
                f"{image.manifest.get('kernel_release')}",
            )
        )
        choice = accelerator_for(hv, image, settings)
        facts["accelerator"] = choice.accelerator.value
        checks.append(
            _check("accelerator", True, choice.reason + (" (cached)" if choice.cached else ""))
        )
    return {"ok": all(c["ok"] for c in checks), "facts": facts, "checks": checks}


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except VmshadowError as exc:
        return str(exc)
