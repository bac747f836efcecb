"""Issue 14, items 8 and 9: a VM's folder is vmshadow's alone, and private.

On libvirt's test driver with real qemu-img overlays: a folder that already
exists is never adopted (the launch is refused, 409 at the API, and nothing
in the folder changes), removal deletes only the files vmshadow made, and
disks are 0600 in 0750 folders of QEMU's group.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmshadow.config import load_settings
from vmshadow.controller.context import user_image
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.shadow import Accelerator
from vmshadow.domain.vm import BuiltinImage, FullVmSpec, GuestSetup, Network, VmVolumes
from vmshadow.hypervisor.filemodes import qemu_gid
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.server import build

pytestmark = [pytest.mark.security, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture
def hv() -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor("test:///default") as conn:
        yield conn
        for name, _meta in conn.list_managed_vms():
            conn.remove_full_vm(name)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def spec(tmp_path: Path, base: Path, tid: str = "t1") -> FullVmSpec:
    return FullVmSpec(
        name="web1",
        transition_id=tid,
        allocation=Allocation(1, 512),
        max_vcpus=2,
        max_memory_mib=512,
        accelerator=Accelerator.TCG,
        # The built-in image's VM keeps its disks in its folder; a store image's
        # are pool volumes (test_a_vm_from_a_store_image_on_qemu... below).
        image=BuiltinImage(tmp_path / "vmlinuz", tmp_path / "initrd.img", base),
        vm_dir=tmp_path / "vms" / "web1",
        created_at="now",
    )


def test_an_existing_folder_is_never_adopted(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    planted = tmp_path / "vms" / "web1"
    planted.mkdir(parents=True)
    other = tmp_path / "other.raw"
    other.write_bytes(b"not yours" * 1000)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(other), "-F", "raw",
         str(planted / "root.qcow2")],
        check=True,
    )  # fmt: skip
    before = {p.name: p.read_bytes() for p in planted.iterdir()}
    with pytest.raises(HypervisorError, match="already exists and was not made for transition"):
        hv.define_full_vm(spec(tmp_path, base))
    assert hv.full_vm_info("web1") is None
    assert {p.name: p.read_bytes() for p in planted.iterdir()} == before


def test_removal_deletes_only_what_vmshadow_made(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    s = spec(tmp_path, base)
    hv.define_full_vm(s)
    hv.define_full_vm(s)  # the same transition may redefine its own folder
    (s.vm_dir / "notes.txt").write_text("the user's")
    assert hv.remove_full_vm("web1") is True
    assert sorted(p.name for p in s.vm_dir.iterdir()) == ["notes.txt"]


def test_disks_are_private_and_folders_closed(
    hv: LibvirtHypervisor, tmp_path: Path, base: Path
) -> None:
    old = os.umask(0)  # a permissive umask: private by construction, not by luck
    try:
        s = spec(tmp_path, base)
        hv.define_full_vm(s)
        hv.start_full_vm("web1")
    finally:
        os.umask(old)
    made = sorted(p.name for p in s.vm_dir.iterdir())
    assert made == [".vmshadow-transition", "root.qcow2", "scratch.img"]
    for name in made:
        mode = (s.vm_dir / name).stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{name} is {mode:o}"
    for folder in (s.vm_dir, s.vm_dir.parent):
        st = folder.stat()
        assert st.st_mode & 0o777 == 0o750, f"{folder} is {st.st_mode & 0o777:o}"
        if os.geteuid() == 0 and qemu_gid() is not None:
            assert st.st_gid == qemu_gid()


def test_the_api_refuses_a_launch_into_an_existing_folder(tmp_path: Path) -> None:
    settings = load_settings(
        {("data_dir",): str(tmp_path / "data"), ("libvirt_uri",): "test:///default"},
        config_path=tmp_path / "none.toml",
        environ={},
    )
    planted = settings.vms_dir / "web1"
    planted.mkdir(parents=True)
    (planted / "root.qcow2").write_text("planted")
    svc = build(settings, with_controller=False)
    with TestClient(svc.app, base_url="http://127.0.0.1") as c:
        r = c.post(
            "/api/v1/transitions",
            json={"vm_name": "web1", "requested": {"vcpus": 1, "memory_mib": 512}},
            headers={"Authorization": f"Bearer {svc.token}"},
        )
    assert r.status_code == 409, r.text
    assert "already exists" in r.json()["error"]
    assert svc.store.unfinished() == []
    assert (planted / "root.qcow2").read_text() == "planted"


@pytest.mark.e2e
def test_a_vm_from_a_store_image_on_qemu_leaves_the_image_to_root() -> None:
    """On real QEMU: the VM starts from a store image named with relabel='no',
    the image stays root's and read-only while it runs, and removal leaves
    nothing. (The blank image boots no OS; QEMU starting is what counts.)"""
    settings = load_settings(config_path=Path("/nonexistent"), environ={})
    store = settings.user_images_dir
    store.mkdir(parents=True, exist_ok=True)
    name = f"blank-{os.getpid()}"
    image = store / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    vm = FullVmSpec(
        name=f"sec-{os.getpid()}",
        transition_id=f"t-{os.getpid()}",
        allocation=Allocation(1, 256),
        max_vcpus=1,
        max_memory_mib=256,
        accelerator=Accelerator.TCG,
        image=user_image(settings, name),
        vm_dir=settings.vms_dir / f"sec-{os.getpid()}",
        created_at="now",
        guest=GuestSetup(network=Network("user")),
        volumes=VmVolumes(f"sec-{os.getpid()}", settings.data_dir / f"sec-disks-{os.getpid()}"),
    )
    try:
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            try:
                hv.define_full_vm(vm)
                assert vm.volumes is not None
                vols = hv.pool_volumes(vm.volumes.pool)
                assert len(vols) == 2  # the root disk and the seed, both the pool's
                for path in vols.values():
                    assert path.stat().st_mode & 0o077 == 0, f"{path} is not private"
                assert hv.start_full_vm(vm.name) is True
                st = image.stat()
                assert (st.st_uid, st.st_mode & 0o222) == (0, 0) or os.geteuid() != 0
            finally:
                hv.remove_full_vm(vm.name)
                assert vm.volumes is not None
                assert hv.pool_volumes(vm.volumes.pool) == {}
                pool = hv._conn.storagePoolLookupByName(vm.volumes.pool)
                pool.destroy()
                pool.undefine()
                vm.volumes.directory.rmdir()
        assert not vm.vm_dir.exists()
        st = image.stat()
        assert st.st_mode & 0o222 == 0 and (st.st_uid == 0 or os.geteuid() != 0)
    finally:
        image.unlink(missing_ok=True)
