"""Launch latency after confirmation: a pre-booted, paused VM resumed, against
a cold define + start of the same VM, side by side in one run.

What vmshadow does (``launch.preboot``, on by default): once predicted, the
pending VM boots at the recommended size with maxima up to the requested size,
and is paused when its guest is ready. On confirmation the decided size is
applied live while it is paused (vCPU hot-plug, balloon, IOPS cap), it is
resumed, and hot-added vCPUs are brought online through the guest agent. The
cold path (``launch.preboot = false``, or an override past the maxima)
defines the VM at the decided size and starts it.

Timed from "confirmed" to:
- running: libvirt reports it running (what moves the transition to ``running``);
- guest ready: the built-in OS's agent greets; a store image's guest agent
  answers with its vCPUs online and cloud-init done (cold boot) or already done
  (pre-booted).

For the built-in image and for the test cloud image (``vmshadow image build
--test-cloud``; skipped, saying so, when it is not built), alternately, on the
real local hypervisor, each VM removed before the next.

    .venv/bin/python bench/launch.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
import uuid
from typing import Any

from benchlib import (
    Machine,
    accelerator_verdict,
    bench_settings,
    default_settings,
    pct,
    private_data_dir,
    r,
    report,
    table,
)
from vmshadow.agent.host.adapter import AgentAdapter
from vmshadow.config import Settings
from vmshadow.controller.context import user_image
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import BuiltinImage, FullVmSpec, GuestSetup, Network, VmVolumes
from vmshadow.hypervisor.filemodes import private_dir, qemu_readable
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.testcloud import cloud_images_dir
from vmshadow.shadow.session import require_image

REQUESTED = Allocation(2, 1024)  # what the user asked for: the pre-booted VM's maxima
RECOMMENDED = Allocation(1, 512, 400)  # what the pre-booted VM boots with
FINAL = Allocation(2, 768, 800)  # what was confirmed: one vCPU hot-added, the balloon up
TIMEOUT_S = 300.0


def _wait_ready(hv: LibvirtHypervisor, name: str, builtin: bool, *, cloud_init: bool) -> None:
    """Until the guest is ready: the built-in agent's hello, or the guest agent
    answering (and, for a cold boot, cloud-init done)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if builtin:
            client = AgentAdapter(hv.open_agent_channel(name))
            try:
                client.wait_hello(TIMEOUT_S)
                return
            finally:
                client.close()
        status = hv.guest_status(name)
        if status is not None and status.agent and (status.ready or not cloud_init):
            return
        time.sleep(0.01 if not cloud_init else 0.5)
    raise TimeoutError(f"{name}: guest not ready in {TIMEOUT_S:.0f} s")


def _preboot(hv: LibvirtHypervisor, spec: FullVmSpec, builtin: bool) -> tuple[float, float]:
    """Boot at the recommendation, pause at guest ready, then time the confirm."""
    hv.define_full_vm(spec)
    try:
        hv.start_full_vm(spec.name)
        _wait_ready(hv, spec.name, builtin, cloud_init=True)
        hv.pause_full_vm(spec.name)
        time.sleep(1.0)  # the decision takes a while: the clock stands still meanwhile
        t0 = time.monotonic()
        hv.set_live_size(spec.name, FINAL)
        hv.resume_full_vm(spec.name)
        running = time.monotonic() - t0
        if not builtin:
            hv.online_guest_vcpus(spec.name, FINAL.vcpus)
        _wait_ready(hv, spec.name, builtin, cloud_init=False)
        ready = time.monotonic() - t0
        hv.sync_guest_clock(spec.name)
        return running, ready
    finally:
        hv.remove_full_vm(spec.name)


def _cold(hv: LibvirtHypervisor, spec: FullVmSpec, builtin: bool) -> tuple[float, float]:
    try:
        t0 = time.monotonic()
        hv.define_full_vm(spec)
        hv.start_full_vm(spec.name)
        running = time.monotonic() - t0
        _wait_ready(hv, spec.name, builtin, cloud_init=True)
        return running, time.monotonic() - t0
    finally:
        hv.remove_full_vm(spec.name)


def _specs(
    settings: Settings, accel: Accelerator, image: str, key: str
) -> tuple[FullVmSpec, FullVmSpec]:
    """The pre-booted VM's spec (recommended, maxima as requested) and the cold one's (final)."""
    name = f"bench-launch-{uuid.uuid4().hex[:8]}"
    if image == "builtin":
        shadow = require_image(settings)
        vm_image: Any = BuiltinImage(shadow.kernel, shadow.initrd, shadow.base)
        guest = None
    else:
        vm_image = user_image(settings, image)
        guest = GuestSetup(network=Network("user"), user="bench", ssh_keys=(key,))
    common: dict[str, Any] = {
        "image": vm_image,
        "accelerator": accel,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "guest": guest,
        "volumes": VmVolumes(f"bench-{name}", settings.vm_disks_dir),
    }
    pre = FullVmSpec(
        name=name,
        transition_id=f"bench-{name}",
        allocation=RECOMMENDED,
        max_vcpus=REQUESTED.vcpus,
        max_memory_mib=REQUESTED.memory_mib,
        vm_dir=settings.vms_dir / name,
        **common,
    )
    cold_name = f"{name}-c"
    cold = FullVmSpec(
        name=cold_name,
        transition_id=f"bench-{cold_name}",
        allocation=FINAL,
        max_vcpus=REQUESTED.vcpus,
        max_memory_mib=FINAL.memory_mib,
        vm_dir=settings.vms_dir / cold_name,
        **common,
    )
    return pre, cold


def _row(path: str, image: str, running: list[float], ready: list[float]) -> dict[str, Any]:
    return {
        "image": image,
        "path": path,
        "to_running_median_s": r(statistics.median(running), 3),
        "to_running_p90_s": r(pct(running, 90), 3),
        "to_guest_ready_median_s": r(statistics.median(ready), 3),
        "to_guest_ready_max_s": r(max(ready), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="per image (the cloud image: 2)")
    ap.add_argument("--quick", action="store_true", help="3 built-in, 1 cloud image")
    args = ap.parse_args()
    repeats = (
        {"builtin": 3, "testcloud": 1}
        if args.quick
        else {
            "builtin": args.repeats,
            "testcloud": max(1, min(args.repeats, 2)),
        }
    )
    base = default_settings()
    accel_name, reason = accelerator_verdict(base)
    accel = Accelerator(accel_name)
    machine = Machine(accel_name, reason)
    cloud = sorted(cloud_images_dir(base.data_dir).glob("*/debian-12-cloud.qcow2"))
    rows: list[dict[str, Any]] = []
    samples: dict[str, dict[str, list[float]]] = {}
    skipped: dict[str, str] = {}
    with private_data_dir(base) as data:
        settings = bench_settings(data, base)
        images = ["builtin"]
        if cloud:
            store = settings.user_images_dir
            store.mkdir()
            private_dir(store)
            shutil.copyfile(cloud[-1], store / "testcloud")
            qemu_readable(store / "testcloud")
            images.append("testcloud")
        else:
            skipped["testcloud"] = "not built: run `vmshadow image build --test-cloud` first"
            print(f"test cloud image skipped: {skipped['testcloud']}")
        key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqQbenchbenchbenchbenchbenchbenchbenchbe bench"
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            for image in images:
                got: dict[str, list[float]] = {k: [] for k in ("pr", "pg", "cr", "cg")}
                builtin = image == "builtin"
                for _ in range(repeats[image]):
                    pre, cold = _specs(settings, accel, image, key)
                    running, ready = _preboot(hv, pre, builtin)
                    got["pr"].append(running)
                    got["pg"].append(ready)
                    running, ready = _cold(hv, cold, builtin)
                    got["cr"].append(running)
                    got["cg"].append(ready)
                    _drop_pool(hv, f"bench-{pre.name}")
                samples[image] = got
                rows.append(_row("pre-booted, resumed (vmshadow)", image, got["pr"], got["pg"]))
                rows.append(_row("cold define + start", image, got["cr"], got["cg"]))
    table(
        rows,
        ["image", "path", "to_running_median_s", "to_running_p90_s", "to_guest_ready_median_s"],
    )
    speedup = {
        image: r(statistics.median(g["cg"]) / statistics.median(g["pg"]), 1)
        for image, g in samples.items()
    }
    all_running = [v for g in samples.values() for v in g["pr"]]
    figures: dict[str, Any] = {
        "confirm_to_running_median_s": r(statistics.median(all_running), 3),
        "confirm_to_running_median_s_by_image": {
            i: r(statistics.median(g["pr"]), 3) for i, g in samples.items()
        },
        "guest_ready_speedup": speedup.get("builtin"),
        "guest_ready_speedup_by_image": speedup,
        "paths": rows,
        "samples_s": samples,
        "skipped": skipped,
    }
    print(f"confirm -> running (pre-booted): median {figures['confirm_to_running_median_s']} s")
    print(f"confirm -> guest ready, cold over pre-booted: {speedup}")
    report(
        "launch",
        machine,
        {
            "repeats": repeats,
            "requested": REQUESTED.as_dict(),
            "recommended": RECOMMENDED.as_dict(),
            "final": FINAL.as_dict(),
        },
        figures,
    )


def _drop_pool(hv: LibvirtHypervisor, pool: str) -> None:
    """The bench's own disk pool (the service's pools are left alone)."""
    import contextlib

    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        p = hv._conn.storagePoolLookupByName(pool)
        p.destroy()
        p.undefine()


if __name__ == "__main__":
    main()
