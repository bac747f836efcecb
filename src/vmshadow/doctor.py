"""``vmshadow doctor``: what this host offers a shadow, and what is missing.

Each check is a row (name, ok, detail, fix); the host is fit when all pass.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from vmshadow.config import Settings
from vmshadow.domain.errors import VmshadowError
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.shadow.accelerator import accelerator_for

SETUP_HINT = "run ./scripts/setup (the README's set-up) and try again"


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail, "fix": "" if ok else fix}


def _free_cpus(hv: LibvirtHypervisor, cpus: int) -> float:
    """Idle host CPUs over half a second, from /proc/stat (what libvirt reads too)."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = snap()
    time.sleep(0.5)
    idle1, total1 = snap()
    return cpus * (idle1 - idle0) / max(1, total1 - total0)


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
        free_cpu = _free_cpus(hv, res["cpus"])
        facts.update(res, free_cpus=round(free_cpu, 2))
        need = settings.shadow.memory_mib + 256
        checks.append(
            _check(
                "host capacity",
                res["free_memory_mib"] >= need and free_cpu >= 0.5,
                f"{free_cpu:.1f} of {res['cpus']} CPUs idle, "
                f"{res['free_memory_mib']} of {res['memory_mib']} MiB free",
                f"a shadow needs about {need} MiB free memory and half a CPU",
            )
        )
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
