"""VMs as vmshadow launches them, on libvirt's test driver, for the tests of
``vm ls`` / ``vm delete`` (use case, API, CLI, page): a transition in the store
and its full VM defined through the same adapter call the controller makes.

``test:///default`` keeps its domains while any connection to it is open in
this process, so every test removes what it defined (``remove_all``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from vmshadow.config import Settings, load_settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.domain.vm import BuiltinImage, FullVmSpec
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.store.repository import Store

S = TransitionState
SIZE = Allocation(2, 1024, 300)
# The forward path a launch takes, in order, up to and including each state.
PATH = [S.SHADOWING, S.PROFILING, S.PREDICTED, S.LAUNCHING, S.RUNNING, S.COMPLETED]


def settings(tmp_path: Path, **hosts: str) -> Settings:
    """On test:///default; ``hosts`` (name=URI) makes a pool of several."""
    overrides: dict[tuple[str, ...], object] = {
        ("data_dir",): str(tmp_path),
        ("libvirt_uri",): "test:///default",
        ("quotas", "max_vcpus"): 8,
    }
    if hosts:
        overrides[("hosts",)] = [{"name": n, "uri": u} for n, u in hosts.items()]
    return load_settings(overrides, config_path=tmp_path / "none.toml", environ={})


def base_image(tmp_path: Path) -> Path:
    path = tmp_path / "base.qcow2"
    if not path.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def launched(
    settings: Settings,
    store: Store,
    hv: LibvirtHypervisor,
    name: str,
    *,
    state: TransitionState = S.RUNNING,
    size: Allocation = SIZE,
    host: str = "local",
) -> str:
    """A launch of ``name`` moved to ``state`` in the store, and its VM defined
    (and started when the transition has launched it); returns the transition id."""
    row = store.create_transition(
        kind=TransitionKind.LAUNCH, vm_name=name, profile="smoke", requested=size, load=None
    )
    for step in PATH[: PATH.index(state) + 1]:
        store.advance(row.id, step, step.value, vm_host=host)
    hv.define_full_vm(
        FullVmSpec(
            name=name,
            transition_id=row.id,
            allocation=size,
            max_vcpus=4,
            max_memory_mib=size.memory_mib,
            accelerator=Accelerator.TCG,
            # The built-in image: the test driver boots no kernel, so any paths do.
            image=BuiltinImage(
                settings.data_dir / "vmlinuz",
                settings.data_dir / "initrd.img",
                base_image(settings.data_dir),
            ),
            vm_dir=settings.vms_dir / name,
            created_at="now",
        )
    )
    if state in (S.RUNNING, S.COMPLETED):
        hv.start_full_vm(name)
    return row.id


def remove_all(hv: LibvirtHypervisor) -> None:
    for name, _meta in hv.list_managed_vms():
        hv.remove_full_vm(name)


def domain_names() -> set[str]:
    """Every domain on test:///default, read on a connection of its own."""
    with LibvirtHypervisor("test:///default") as hv:
        return {d.name() for d in hv._conn.listAllDomains(0)}
