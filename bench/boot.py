"""Agent-ready of a shadow, cold-booted and restored from its template, side by side.

In one run, N cold boots (``shadow.templates`` off) and N restores from the
built-in image's template alternate, so both see the same host load. For
the cold boots, the baseline: the moment the guest's root init prints its
first line (kernel + initramfs + root mount done), read from the serial
console; the gap between the two is what the agent itself costs (Python
start-up, hello). For the restores: the restore itself (libvirt's
``virDomainRestoreFlags``, header rewrite included) and the agent's answer
to ``resync``. Goal: restored agent ready <= 1.5 s median and >= 4x faster
than cold. Also prints the image size against its budget.

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
from vmshadow.shadow.session import ShadowSession, require_image, session_options

INIT_MARK = "vmshadow-init: starting agent"
BUDGET_READY_S = 8.0
GOAL_RESTORED_S = 1.5
GOAL_SPEEDUP = 4.0
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


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 2) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=7, help="boots of each kind")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 boots of each kind")
    args = ap.parse_args()
    if args.quick:
        args.boots = 3
    settings = load_settings()
    image = require_image(settings)
    options = session_options(settings)
    templates = options["templates"]
    if templates is None:
        raise SystemExit("shadow.templates is off: nothing to restore from")
    ready, init, boot = [], [], []
    restored_ready, restore_s, restored_boots = [], [], []
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        choice = accelerator_for(hv, image, settings)
        machine = Machine(choice.accelerator.value, choice.reason)

        def shadow(with_templates: bool) -> ShadowSession:
            return ShadowSession(
                hv,
                image,
                settings.runs_dir,
                accelerator=choice.accelerator,
                size=options["size"],
                scratch_cache=options["scratch_cache"],
                templates=templates if with_templates else None,
            )

        # The template, saved now if it is not there yet: not one of the figures.
        with shadow(True) as first:
            template_note = f"{first.record.boot} ({first.record.boot_reason or 'template there'})"
        for _ in range(args.boots):
            session = shadow(False)
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
            with shadow(True) as restored:
                t = restored.record.timings
                restored_boots.append(restored.record.boot)
                if restored.record.boot == "restored":
                    restored_ready.append(t.agent_ready_s)
                    restore_s.append(t.boot_s - t.prepared_s)
    image_mb = image.size_bytes() / 1e6
    cold = statistics.median(ready)
    warm = statistics.median(restored_ready) if restored_ready else None
    result = {
        "accelerator": choice.accelerator.value,
        "boots": args.boots,
        "template": template_note,
        "median_domain_start_s": round(statistics.median(boot), 2),
        "median_root_init_s (baseline)": round(statistics.median(init), 2) if init else None,
        "median_agent_ready_s": round(cold, 2),
        "max_agent_ready_s": round(max(ready), 2),
        "agent_ready_over_baseline": round(cold / statistics.median(init), 2) if init else None,
        "median_agent_ready_cold_s": round(cold, 2),
        "median_agent_ready_restored_s": None if warm is None else round(warm, 2),
        "max_agent_ready_restored_s": round(max(restored_ready), 2) if restored_ready else None,
        "median_restore_s": _median(restore_s),
        "restored_speedup": None if not warm else round(cold / warm, 1),
        "restores_that_fell_back_to_cold": sum(1 for b in restored_boots if b != "restored"),
        "goal_restored_s": GOAL_RESTORED_S,
        "goal_speedup": GOAL_SPEEDUP,
        "budget_agent_ready_s": BUDGET_READY_S,
        "image_mb": round(image_mb, 1),
        "budget_image_mb": BUDGET_IMAGE_MB,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:34} {v}")
    report("boot", machine, {"boots": args.boots}, result)


if __name__ == "__main__":
    main()
