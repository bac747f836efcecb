"""The test cloud image boots under QEMU (TCG) and behaves like a Debian cloud image.

The image is built on first use and cached by its inputs in the default data
folder (``vmshadow image build --test-cloud``). The VM boots a copy-on-write
overlay of it with a NoCloud seed that creates a user, with 1 vCPU and
512 MiB, a serial console to a file, the guest agent's channel and no network
interface at all (tests send no traffic outside loopback). It must answer
the agent, finish cloud-init and have the user; then the domain and every
file the test made are removed, whatever happened.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import libvirt
import libvirt_qemu
import pytest

from vmshadow.config import load_settings
from vmshadow.hypervisor.filemodes import private_dir
from vmshadow.image.seed import write_seed
from vmshadow.image.testcloud import MAX_IMAGE_BYTES, build_test_cloud_image

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]

URI = "qemu:///system"
BOOT_TIMEOUT_S = 240
USER_DATA = """#cloud-config
users:
  - default
  - name: probe
    shell: /bin/bash
    lock_passwd: true
"""
# cloud-init's last stage prints this on the console when it is done.
FINISHED = re.compile(r"Cloud-init v\. \S+ finished at")


def _domain_xml(name: str, overlay: Path, base: Path, seed: Path, console: Path) -> str:
    # The base is named with relabel='no': libvirt would otherwise hand the
    # shared, read-only image to QEMU's user while this VM runs (it is 0444, so
    # QEMU reads it as it is). The seed is a CD-ROM on IDE, as virt-install
    # attaches it on the 'pc' machine type.
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features>
    <acpi/>
    <tcg><tb-cache unit='MiB'>128</tb-cache></tcg>
  </features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(overlay))}/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file={quoteattr(str(base))}><seclabel model='dac' relabel='no'/></source>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file={quoteattr(str(seed))}/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <serial type='file'><source path={quoteattr(str(console))}/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
"""


def _agent(dom: libvirt.virDomain, command: str, **arguments: object) -> Any:
    request = json.dumps({"execute": command, "arguments": arguments})
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, request, 5, 0))["return"]


def _guest_exec(dom: libvirt.virDomain, path: str, *args: str) -> tuple[int, str]:
    started = _agent(dom, "guest-exec", path=path, arg=list(args), **{"capture-output": True})
    pid = started["pid"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = _agent(dom, "guest-exec-status", pid=pid)
        if status["exited"]:
            out = base64.b64decode(status.get("out-data", "")).decode()
            return int(status["exitcode"]), out
        time.sleep(0.5)
    raise AssertionError(f"{path} {' '.join(args)} did not exit within 60 s in the guest")


def _wait(what: str, check: Callable[[], object], started: float, console: Path) -> float:
    """Seconds from ``started`` until ``check()`` is true; fails at BOOT_TIMEOUT_S."""
    while time.monotonic() - started < BOOT_TIMEOUT_S:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    # The console's tail says where the boot stopped (GRUB, the kernel, a unit).
    tail = _text(console)[-3000:]
    raise AssertionError(f"{what} not within {BOOT_TIMEOUT_S} s of the start; console:\n{tail}")


def _qemu_rss_kib(name: str) -> int:
    pid = Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for QEMU process {pid}")


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _pings(dom: libvirt.virDomain) -> bool:
    try:
        _agent(dom, "guest-ping")
    except libvirt.libvirtError:
        return False  # the agent is not up yet (or the channel not connected)
    return True


def test_test_cloud_image_boots_finishes_cloud_init_and_creates_the_user() -> None:
    settings = load_settings(config_path=Path("/nonexistent"), environ={})
    t0 = time.monotonic()
    image = build_test_cloud_image(settings.data_dir, log=print)
    build_s = time.monotonic() - t0
    info = image.path.stat()
    assert image.size_bytes() <= MAX_IMAGE_BYTES
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o444, 0)
    assert stat.S_IMODE(image.directory.stat().st_mode) == 0o755
    assert image.manifest["size_bytes"] == info.st_size

    # QEMU runs as libvirt-qemu and cannot enter pytest's folders under /tmp.
    work = Path(tempfile.mkdtemp(prefix="e2e-testcloud-", dir=settings.data_dir))
    private_dir(work)
    name = f"vmshadow-e2e-testcloud-{uuid.uuid4().hex[:8]}"
    overlay, seed, console = work / "root.qcow2", work / "seed.iso", work / "console.log"
    conn, dom = None, None
    try:
        conn = libvirt.open(URI)
        # A 3 GiB overlay on the 2 GiB image: cloud-init's growpart and resizefs
        # must grow the root to it, as they do for a VM launched with --disk.
        base = ["-F", "qcow2", "-b", str(image.path)]
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", *base, str(overlay), "3G"], check=True
        )
        write_seed(
            seed, hostname="testcloud", instance_id=f"i-{name}", user_data=USER_DATA, mode=0o644
        )
        dom = conn.defineXML(_domain_xml(name, overlay, image.path, seed, console))
        # libvirt 9.0 keeps the TCG translation cache cap (without it QEMU's RSS
        # grows far past the guest's memory).
        assert "<tb-cache unit='KiB'>131072</tb-cache>" in dom.XMLDesc()
        started = time.monotonic()
        dom.create()
        # relabel='no' held: the shared image was not handed to QEMU's user.
        assert image.path.stat().st_uid == 0
        agent_s = _wait("the guest agent's answer", lambda: _pings(dom), started, console)
        cloud_init_s = _wait(
            "cloud-init's 'finished' line",
            lambda: FINISHED.search(_text(console)),
            started,
            console,
        )

        code, out = _guest_exec(dom, "/usr/bin/cloud-init", "status")
        assert code == 0 and "status: done" in out, out
        code, out = _guest_exec(dom, "/usr/bin/id", "probe")
        assert code == 0 and "(probe)" in out, out
        code, out = _guest_exec(dom, "/usr/bin/hostname")
        assert out.strip() == "testcloud"
        # No NIC: the guest has only its loopback interface.
        code, out = _guest_exec(dom, "/usr/bin/ls", "/sys/class/net")
        assert out.split() == ["lo"], out
        code, out = _guest_exec(dom, "/usr/bin/df", "--block-size=1M", "--output=size", "/")
        assert int(out.split()[-1]) > 2600, out  # was 2 GiB; the overlay is 3 GiB
        # cloud-init made this VM's own SSH host keys (the image ships none).
        code, out = _guest_exec(dom, "/usr/bin/ls", "/etc/ssh")
        assert "ssh_host_ed25519_key" in out.split(), out
        rss_mib = _qemu_rss_kib(name) / 1024
        print(
            f"\ntest cloud image: {image.size_bytes() / 2**20:.0f} MiB on disk, "
            f"build or cache lookup {build_s:.1f} s "
            f"(manifest build_seconds {image.manifest['build_seconds']}); "
            f"guest agent answered {agent_s:.1f} s after start, "
            f"cloud-init finished {cloud_init_s:.1f} s after start; "
            f"QEMU RSS {rss_mib:.0f} MiB"
        )
    finally:
        if dom is not None:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        if conn is not None:
            conn.close()
        shutil.rmtree(work)
    check = libvirt.open(URI)
    try:
        assert name not in [d.name() for d in check.listAllDomains()]
    finally:
        check.close()
    assert not work.exists()
    assert os.path.exists(image.path)  # the cached image stays for the next run
