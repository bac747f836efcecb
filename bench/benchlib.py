"""What every bench shares: the machine it ran on, percentiles, a private data
folder, and writing the figures to ``bench/results/<name>.json``.

The machine is described in every result because figures without it mean
nothing: these run on a shared 2-vCPU VM with CPU steal, under TCG. The steal
and load average seen *during* the run are recorded beside the figures.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmshadow.config import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def r(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies over all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


class Machine:
    """The host, and how busy it was while the bench ran (steal, load)."""

    def __init__(self, accelerator: str | None = None, reason: str | None = None) -> None:
        self.accelerator = accelerator
        self.reason = reason
        self._ticks = _cpu_ticks()
        self._load0 = os.getloadavg()[0]
        self._t0 = time.monotonic()

    def describe(self) -> dict[str, Any]:
        steal, total = _cpu_ticks()
        d_total = max(total - self._ticks[1], 1)
        return {
            "cpu_model": _cpu_model(),
            "cores": os.cpu_count(),
            "ram_mib": _mem_total_mib(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "accelerator": self.accelerator,
            "accelerator_reason": self.reason,
            "steal_pct_during_run": round(100 * (steal - self._ticks[0]) / d_total, 1),
            "loadavg_1m_start": round(self._load0, 2),
            "loadavg_1m_end": round(os.getloadavg()[0], 2),
            "run_s": round(time.monotonic() - self._t0, 1),
        }


def accelerator_verdict(settings: Settings) -> tuple[str, str]:
    """KVM or TCG as the service would choose it (cached verdict, or a probe boot)."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
    from vmshadow.shadow.accelerator import accelerator_for
    from vmshadow.shadow.session import require_image

    image = require_image(settings)
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        choice = accelerator_for(hv, image, settings)
    return choice.accelerator.value, choice.reason


@contextmanager
def private_data_dir(settings: Settings) -> Iterator[Path]:
    """A data folder of our own under the service's, removed afterwards.

    Under the service's data folder (not /tmp) because QEMU runs as
    libvirt-qemu and must reach the shadow's disks through every parent.
    """
    root = settings.data_dir / "bench" / uuid.uuid4().hex[:8]
    root.mkdir(parents=True)
    for p in (root, root.parent):
        p.chmod(0o755)
    try:
        yield root
    finally:
        # The services and VMs it ran defined libvirt pools over it.
        from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor

        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            hv.drop_pools_under(root)
        shutil.rmtree(root, ignore_errors=True)


def bench_settings(data_dir: Path, base: Settings, **overrides: Any) -> Settings:
    """The service's settings with our data folder, the shared image and no config file."""
    tree: dict[tuple[str, ...], Any] = {
        ("data_dir",): str(data_dir),
        ("images_dir",): str(base.images_dir),
        ("libvirt_uri",): base.libvirt_uri,
    }
    for key, value in overrides.items():
        tree[tuple(key.split("__"))] = value
    return load_settings(tree, config_path=data_dir / "none.toml", environ={})


def report(name: str, machine: Machine, args: dict[str, Any], figures: dict[str, Any]) -> Path:
    """Print the machine and the figures, and write them to bench/results/<name>.json."""
    doc: dict[str, Any] = {
        "bench": name,
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine.describe(),
        "args": args,
        "figures": figures,
    }
    m = doc["machine"]
    print(
        f"\nmachine: {m['cpu_model']}, {m['cores']} cores, {m['ram_mib']} MiB RAM, "
        f"accelerator {m['accelerator'] or 'n/a'}; steal {m['steal_pct_during_run']} % "
        f"and load {m['loadavg_1m_start']} -> {m['loadavg_1m_end']} during the run "
        f"({m['run_s']} s)"
    )
    if m["accelerator_reason"]:
        print(f"         {m['accelerator_reason']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written to {path.relative_to(REPO)}")
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain text table: benches print for terminals and logs alike."""
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)))


def default_settings() -> Settings:
    return load_settings()
