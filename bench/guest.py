"""A VM from a store image: cold boot to "guest ready", beside the built-in VM.

Each boot defines and starts a full VM exactly as a launch does (1 vCPU,
512 MiB, user networking with SSH on 127.0.0.1, a NoCloud seed), from the test
cloud image (``vmshadow image build --test-cloud``: Debian 12 shaped like
Debian's genericcloud image), and times:

- ``agent_s``: start -> the qemu-guest-agent answers;
- ``ready_s``: start -> cloud-init finished (what the "guest ready" event waits for);
- ``ssh_s``: start -> an SSH login through the loopback forward works.

The baseline, in the same run: the built-in image's VM, start -> its agent's
hello (the OS vmshadow boots when a launch names no image).

Then the shadow side: request -> recommendation of ``vmshadow plan`` for the
smoke profile in a shadow of the test image's own OS (boot, settle, idle
phase, profile, prediction), beside the same on the built-in OS.

    .venv/bin/python bench/guest.py [--boots 3] [--plans 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from benchlib import Machine, accelerator_verdict, bench_settings, private_data_dir, report
from vmshadow.agent.host.adapter import AgentAdapter
from vmshadow.config import load_settings
from vmshadow.controller.context import user_image
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import BuiltinImage, FullVmSpec, GuestSetup, Network, VmVolumes
from vmshadow.hypervisor.filemodes import private_dir, qemu_readable
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.testcloud import build_test_cloud_image
from vmshadow.shadow.session import require_image
from vmshadow.usecases.plan import plan

TIMEOUT_S = 600


def _ssh_ok(port: int, key: Path) -> bool:
    proc = subprocess.run(
        ["ssh", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", "bench@127.0.0.1", "true"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return proc.returncode == 0


def boot_store_vm(hv: LibvirtHypervisor, spec: FullVmSpec, key: Path) -> dict[str, float]:
    hv.define_full_vm(spec)
    try:
        t0 = time.monotonic()
        hv.start_full_vm(spec.name)
        port = hv.full_vm_info(spec.name)["ssh_port"]  # type: ignore[index]
        got: dict[str, float] = {}
        while time.monotonic() - t0 < TIMEOUT_S and len(got) < 3:
            now = time.monotonic() - t0
            status = hv.guest_status(spec.name)
            if status is not None and status.agent:
                got.setdefault("agent_s", now)
            if status is not None and status.ready:
                got.setdefault("ready_s", now)
            if "ssh_s" not in got and "agent_s" in got and _ssh_ok(int(str(port)), key):
                got["ssh_s"] = time.monotonic() - t0
            time.sleep(0.5)
        return got
    finally:
        hv.remove_full_vm(spec.name)


def boot_builtin_vm(hv: LibvirtHypervisor, spec: FullVmSpec) -> float:
    hv.define_full_vm(spec)
    try:
        t0 = time.monotonic()
        hv.start_full_vm(spec.name)
        client = AgentAdapter(hv.open_agent_channel(spec.name))
        try:
            client.wait_hello(TIMEOUT_S)
        finally:
            client.close()
        return time.monotonic() - t0
    finally:
        hv.remove_full_vm(spec.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--plans", type=int, default=3)
    args = ap.parse_args()
    base = load_settings()
    accel, reason = accelerator_verdict(base)
    machine = Machine(accel, reason)
    image_file = build_test_cloud_image(base.data_dir).path
    shadow_image = require_image(base)
    rows: dict[str, list[float]] = {
        "agent_s": [],
        "ready_s": [],
        "ssh_s": [],
        "builtin_s": [],
        "plan_target_os_s": [],
        "plan_builtin_s": [],
    }
    idle_mib: list[float] = []
    with private_data_dir(base) as data:
        settings = bench_settings(data, base)
        store = settings.user_images_dir
        store.mkdir()
        private_dir(store)
        shutil.copyfile(image_file, store / "testcloud")
        qemu_readable(store / "testcloud")
        key = data / "id_bench"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pool = f"bench-{uuid.uuid4().hex[:8]}"
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            try:
                for n in range(args.boots):
                    common = {
                        "transition_id": f"b{n}",
                        "allocation": Allocation(1, 512),
                        "max_vcpus": 1,
                        "max_memory_mib": 512,
                        "accelerator": Accelerator(accel),
                        "created_at": "now",
                    }
                    store_vm = FullVmSpec(
                        name=f"bench-guest-{n}",
                        image=user_image(settings, "testcloud"),
                        vm_dir=settings.vms_dir / f"bench-guest-{n}",
                        guest=GuestSetup(
                            network=Network("user"),
                            user="bench",
                            ssh_keys=(Path(f"{key}.pub").read_text().strip(),),
                        ),
                        volumes=VmVolumes(pool, settings.vm_disks_dir),
                        **common,  # type: ignore[arg-type]
                    )
                    for k, v in boot_store_vm(hv, store_vm, key).items():
                        rows[k].append(v)
                    builtin = FullVmSpec(
                        name=f"bench-builtin-{n}",
                        image=BuiltinImage(
                            shadow_image.kernel, shadow_image.initrd, shadow_image.base
                        ),
                        vm_dir=settings.vms_dir / f"bench-builtin-{n}",
                        **common,  # type: ignore[arg-type]
                    )
                    rows["builtin_s"].append(boot_builtin_vm(hv, builtin))
                for _ in range(args.plans):
                    for image, key_ in (
                        ("testcloud", "plan_target_os_s"),
                        ("builtin", "plan_builtin_s"),
                    ):
                        t0 = time.monotonic()
                        doc = plan(settings, "smoke", None, connect=LibvirtHypervisor, image=image)
                        rows[key_].append(time.monotonic() - t0)
                        idle = doc["prediction"]["detail"].get("os_idle")
                        if image != "builtin" and isinstance(idle, dict):
                            idle_mib.append(float(idle["memory_mib"]))
            finally:
                try:
                    p = hv._conn.storagePoolLookupByName(pool)
                    p.destroy()
                    p.undefine()
                except Exception:
                    pass
    figures: dict[str, float | None] = {
        f"median_{k}": round(statistics.median(v), 1) if v else None for k, v in rows.items()
    }
    figures.update({f"max_{k}": round(max(v), 1) if v else None for k, v in rows.items()})
    figures["median_os_idle_mib"] = round(statistics.median(idle_mib), 1) if idle_mib else None
    if rows["plan_target_os_s"] and rows["plan_builtin_s"]:
        figures["plan_target_over_builtin"] = round(
            statistics.median(rows["plan_target_os_s"]) / statistics.median(rows["plan_builtin_s"]),
            1,
        )
    if rows["ready_s"] and rows["builtin_s"]:
        figures["ready_over_builtin"] = round(
            statistics.median(rows["ready_s"]) / statistics.median(rows["builtin_s"]), 1
        )
    for k, v in figures.items():
        print(f"{k:28} {v}")
    report(
        "guest",
        machine,
        {"boots": args.boots, "plans": args.plans, "size": "1 vCPU, 512 MiB"},
        figures,
    )


if __name__ == "__main__":
    main()
