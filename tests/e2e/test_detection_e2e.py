"""A domain defined with `virsh define` and vmshadow's request element ends as a
running, right-sized VM on real QEMU, with no call to vmshadow's API: the
controller (as `vmshadow serve` runs it, with its own data dir and database)
finds it by libvirt's events; the test only reads the store, to check.

The domain boots the built-in image's kernel and initramfs with no disk: the
guest never finds a root, but QEMU runs it, which is all a size needs. The
policy is auto-within with a bound any smoke recommendation meets, so the
decision is the policy's, without a person.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from e2e_helpers import wait_for
from service_helpers import E2E_ROOT, cached_accelerator, drop_pools_under

from vmshadow.config import Settings, load_settings
from vmshadow.controller.engine import Controller
from vmshadow.domain.transition import Transition
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.hypervisor.requestxml import REQUEST_NS, STATUS_NS, parse_status
from vmshadow.image.builder import find_image
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


@dataclass
class Run:
    """The controller as the service runs it (its own data dir and database),
    in this process: the test reads the store, it never asks the controller."""

    store: Store
    controller: Controller

    def row(self, name: str) -> Transition | None:
        rows = self.store.list_transitions(name=name)
        return rows[0] if rows else None

    def wait_state(self, tid: str, *states: str, timeout: float) -> Transition:
        wait_for(
            f"transition {tid} in {states}",
            lambda: self.store.get(tid).state in states,
            timeout=timeout,
        )
        return self.store.get(tid)


@pytest.fixture(scope="module")
def run(settings: Settings) -> Iterator[Run]:
    data_dir = E2E_ROOT / uuid.uuid4().hex[:8]
    data_dir.mkdir(parents=True)
    os.chmod(E2E_ROOT, 0o755)
    os.chmod(data_dir, 0o755)
    s = load_settings(
        {
            ("data_dir",): str(data_dir),
            ("images_dir",): str(settings.images_dir),
            ("accelerator",): cached_accelerator(settings).value,
            ("controller", "phase_s"): 3,
            ("controller", "refine_rounds"): 0,
            ("controller", "observe_s"): 3,
            ("controller", "poll_s"): 0.5,
            ("controller", "detect"): True,
            ("controller", "detect_interval_s"): 5,
        },
        config_path=Path("/nonexistent"),
        environ={},
    )
    engine = make_engine(s.db_url)
    migrate(engine)
    store = Store(engine)
    controller = Controller(s, store)
    controller.start()
    try:
        yield Run(store, controller)
    finally:
        controller.stop()
        engine.dispose()
        drop_pools_under(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def domain(settings: Settings, tmp_path: Path, hv: LibvirtHypervisor) -> Iterator[str]:
    name = f"e2e-detect-{uuid.uuid4().hex[:6]}"
    image = find_image(settings.images_dir)
    assert image is not None
    xml = f"""<domain type='qemu'>
  <name>{name}</name>
  <metadata>
    <vmshadow:request xmlns:vmshadow="{REQUEST_NS}" profile="smoke" policy="auto-within:1000"/>
  </metadata>
  <memory unit='MiB'>768</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{image.kernel}</kernel>
    <initrd>{image.initrd}</initrd>
    <cmdline>console=ttyS0</cmdline>
  </os>
  <devices><serial type='pty'/><console type='pty'/></devices>
</domain>
"""
    path = tmp_path / f"{name}.xml"
    path.write_text(xml)
    (tmp_path / "path").write_text(str(path))
    yield name
    dom = hv._conn.lookupByName(name) if name in hv._conn.listDefinedDomains() else None
    if dom is None:
        try:
            dom = hv._conn.lookupByName(name)
        except libvirt.libvirtError:
            dom = None
    if dom is not None:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def test_virsh_define_ends_as_a_running_right_sized_vm(
    run: Run, domain: str, hv: LibvirtHypervisor, tmp_path: Path
) -> None:
    path = (tmp_path / "path").read_text()
    t0 = time.monotonic()
    subprocess.run(["virsh", "-c", "qemu:///system", "define", path], check=True, timeout=30)
    wait_for("the request taken", lambda: run.row(domain) is not None, timeout=60)
    row = run.row(domain)
    assert row is not None and row.origin == "libvirt" and row.policy == "auto-within:1000"
    taken = time.monotonic() - t0
    row = run.wait_state(row.id, "running", "completed", timeout=180)
    took = time.monotonic() - t0
    print(f"virsh define -> transition {taken:.1f} s, -> running right-sized VM {took:.1f} s")
    dom = hv._conn.lookupByName(domain)
    assert dom.isActive()
    pred = run.store.latest_prediction(row.id)
    assert pred is not None
    assert (row.final_vcpus, row.final_memory_mib) == (pred.rec_vcpus, pred.rec_memory_mib)
    assert row.decision == "prediction"
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == pred.rec_vcpus
    assert dom.maxMemory() // 1024 == pred.rec_memory_mib
    messages = [e.message for e in run.store.events(row.id)]
    assert any("confirmed automatically by policy auto-within:1000" in m for m in messages)
    status = parse_status(dom.XMLDesc(0))
    assert status is not None and status.transition == row.id
    # Observed, then done: the request removed so it is never taken again.
    run.wait_state(row.id, "completed", timeout=60)
    wait_for(
        "the request removed",
        lambda: REQUEST_NS not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
        timeout=30,
    )
    assert STATUS_NS in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert len(run.store.list_transitions(name=domain)) == 1
