"""Boot-to-agent-ready of a shadow, median of N boots, with its baseline.

Baseline, measured in the same run on the same host: the moment the guest's
root init prints its first line (kernel + initramfs + root mount done), read
from the serial console. The gap between the two is what the agent itself
costs (Python start-up, hello). Also prints the image size against its budget.

    .venv/bin/python bench/boot.py [--boots 7] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from benchlib import Machine, report
from vmshadow.config import load_settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.shadow.accelerator import accelerator_for
from vmshadow.shadow.session import ShadowSession, require_image

INIT_MARK = "vmshadow-init: starting agent"
BUDGET_READY_S = 8.0
BUDGET_IMAGE_MB = 200


def _watch_console(
    path: Path, started: float, found: dict[str, float], stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            if INIT_MARK in path.read_text(errors="replace"):
                found["init_s"] = time.monotonic() - started
                return
        except OSError:
            pass
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 boots")
    args = ap.parse_args()
    if args.quick:
        args.boots = 3
    settings = load_settings()
    image = require_image(settings)
    ready, init, boot = [], [], []
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        choice = accelerator_for(hv, image, settings)
        machine = Machine(choice.accelerator.value, choice.reason)
        for _ in range(args.boots):
            session = ShadowSession(hv, image, settings.runs_dir, accelerator=choice.accelerator)
            found: dict[str, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(
                target=_watch_console,
                args=(session.spec.console_log, time.monotonic(), found, stop),
                daemon=True,
            )
            watcher.start()
            with session:
                ready.append(session.record.timings.agent_ready_s)
                boot.append(session.record.timings.boot_s)
            stop.set()
            watcher.join()
            if "init_s" in found:
                init.append(found["init_s"])
    image_mb = image.size_bytes() / 1e6
    result = {
        "accelerator": choice.accelerator.value,
        "boots": args.boots,
        "median_domain_start_s": round(statistics.median(boot), 2),
        "median_root_init_s (baseline)": round(statistics.median(init), 2) if init else None,
        "median_agent_ready_s": round(statistics.median(ready), 2),
        "max_agent_ready_s": round(max(ready), 2),
        "agent_ready_over_baseline": round(statistics.median(ready) / statistics.median(init), 2)
        if init
        else None,
        "budget_agent_ready_s": BUDGET_READY_S,
        "image_mb": round(image_mb, 1),
        "budget_image_mb": BUDGET_IMAGE_MB,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:32} {v}")
    report("boot", machine, {"boots": args.boots}, result)


if __name__ == "__main__":
    main()
