"""The image store as a libvirt pool: which domains use a store image (on the
test driver), and one real import into a directory pool on ``qemu:///system``.

The real test names its own pool and folder under /var/lib/vmshadow (QEMU's
libvirt cannot enter pytest's /tmp folders) and removes both, whatever happens.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import libvirt
import pytest

from vmshadow.domain.errors import HypervisorError
from vmshadow.hypervisor.domainxml import (
    METADATA_KEY,
    METADATA_NS,
    ShadowMetadata,
    metadata_element,
)
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.catalog import ImageCatalog, ImageInUse, image_users

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]


class NoTransitions:
    def unfinished(self) -> list[Any]:
        return []


def managed_vm_xml(
    name: str, root: Path, chain: list[tuple[Path, str]], *, role: str = "vm"
) -> str:
    """A full VM as vmshadow defines one (``fullvmxml``): metadata role ``vm``, a
    root overlay whose ``backingStore`` chain names the store image."""
    ET.register_namespace(METADATA_KEY, METADATA_NS)
    dom = ET.Element("domain", type="test")
    ET.SubElement(dom, "name").text = name
    meta = ET.SubElement(dom, "metadata")
    meta.append(metadata_element(ShadowMetadata(role, name, str(root.parent), "now", "t1")))
    ET.SubElement(dom, "memory", unit="MiB").text = "256"
    ET.SubElement(dom, "vcpu").text = "1"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64").text = "hvm"
    devices = ET.SubElement(dom, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=str(root))
    parent = disk
    for path, fmt in chain:
        store = ET.SubElement(parent, "backingStore", type="file")
        ET.SubElement(store, "format", type=fmt)
        ET.SubElement(store, "source", file=str(path))
        parent = store
    ET.SubElement(parent, "backingStore")
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    return ET.tostring(dom, encoding="unicode")


def drop_pool(hv: LibvirtHypervisor, name: str) -> None:
    try:
        pool = hv._conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if pool.isActive():
        pool.destroy()
    pool.undefine()


@pytest.fixture
def defined() -> list[str]:
    """Names of the domains a test defined on the test driver, undefined after it."""
    return []


@pytest.fixture
def test_hv(defined: list[str]) -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor("test:///default") as hv:
        yield hv
        for name in defined:
            dom = hv._conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()


def define(hv: LibvirtHypervisor, defined: list[str], xml: str) -> None:
    defined.append(hv._conn.defineXML(xml).name())


def test_images_in_use_names_every_domain_whose_chain_names_a_store_file(
    test_hv: LibvirtHypervisor, defined: list[str], tmp_path: Path
) -> None:
    store = tmp_path / "user-images"
    store.mkdir()
    deb, base = store / "deb", store / "base"
    chain = [(deb, "qcow2"), (base, "raw")]
    for name, role in (("imgt-web1", "vm"), ("imgt-other", "")):
        xml = managed_vm_xml(name, tmp_path / "vms" / name / "root.qcow2", chain, role=role)
        define(test_hv, defined, xml)
    test_hv._conn.lookupByName("imgt-web1").create()  # running: both definitions are read
    outside = managed_vm_xml("imgt-out", tmp_path / "root.qcow2", [(tmp_path / "x", "raw")])
    define(test_hv, defined, outside)

    used = test_hv.images_in_use(store)
    assert sorted(used) == [base.resolve(), deb.resolve()]
    assert sorted(used[deb.resolve()]) == ["imgt-other", "imgt-web1"]

    users = image_users(store, [test_hv], NoTransitions())
    assert sorted(users["deb"].vms) == ["imgt-other (not vmshadow's)", "imgt-web1"]


def test_remove_is_refused_while_a_managed_vm_uses_the_image(
    test_hv: LibvirtHypervisor, defined: list[str], tmp_path: Path
) -> None:
    cat = ImageCatalog(
        tmp_path / "user-images", tmp_path / "records", f"imgt-{uuid.uuid4().hex[:8]}"
    )
    src = tmp_path / "deb.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "16M"], check=True)
    try:
        cat.add_file("deb", src, test_hv, os_variant="debian12")
        chain = [((cat.store_dir / "deb").resolve(), "qcow2")]
        define(test_hv, defined, managed_vm_xml("imgt-web2", tmp_path / "root.qcow2", chain))
        row = SimpleNamespace(
            id="t1", kind="launch", vm_name="imgt-web2", state="running", image="deb"
        )
        store = SimpleNamespace(unfinished=lambda: [row])
        with pytest.raises(ImageInUse, match="VM imgt-web2, transition t1"):
            cat.remove("deb", test_hv, image_users(cat.store_dir, [test_hv], store))
        assert (cat.store_dir / "deb").exists()
    finally:
        drop_pool(test_hv, cat.pool)


@pytest.fixture
def system_dir() -> Iterator[Path]:
    if not Path("/var/lib/vmshadow").is_dir():
        pytest.skip("needs /var/lib/vmshadow (run ./scripts/setup as root)")
    path = Path("/var/lib/vmshadow") / f"test-imgpool-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True, text=True
    ).stdout


def test_add_and_remove_through_a_real_directory_pool(system_dir: Path) -> None:
    try:
        hv = LibvirtHypervisor("qemu:///system")
    except HypervisorError as exc:
        pytest.skip(f"qemu:///system is not reachable: {exc}")
    cat = ImageCatalog(system_dir / "user-images", system_dir / "records", system_dir.name)
    src = system_dir / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src), "32M"], check=True)
    with hv:
        try:
            info = cat.add_file("small", src, hv, os_variant="fedora40")
            assert info.default_user == "fedora"
            listed = virsh("vol-list", cat.pool)
            assert str(cat.store_dir / "small") in listed, listed
            assert re.search(r"Autostart:\s+yes", virsh("pool-info", cat.pool))
            cat.remove("small", hv, image_users(cat.store_dir, [hv], NoTransitions()))
            assert "small" not in virsh("vol-list", cat.pool)
            assert not (cat.store_dir / "small").exists()
            assert not (cat.records_dir / "small.json").exists()
        finally:
            drop_pool(hv, cat.pool)
    assert cat.pool not in virsh("pool-list", "--all")


def test_a_pool_name_over_another_folder_is_refused(tmp_path: Path) -> None:
    """Pool names are host-wide: a second install naming the same pool over its
    own folder must not silently use (or re-point) the first one's."""
    with LibvirtHypervisor("test:///default") as hv:
        hv.ensure_pool("vmshadow-clash", tmp_path / "a")
        try:
            hv.ensure_pool("vmshadow-clash", tmp_path / "a")  # the same: fine, again
            with pytest.raises(HypervisorError, match=r"is over .*/a, not .*/b"):
                hv.ensure_pool("vmshadow-clash", tmp_path / "b")
        finally:
            pool = hv._conn.storagePoolLookupByName("vmshadow-clash")
            pool.destroy()
            pool.undefine()


def test_pools_set_up_at_the_same_moment_by_several_connections(tmp_path: Path) -> None:
    """Two controllers starting their first launch at once both set the disk
    pool up: the one that loses the define or the start must still succeed."""
    import threading

    folder = tmp_path / "disks"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    conns = [LibvirtHypervisor("test:///default") for _ in range(8)]

    def go(hv: LibvirtHypervisor) -> None:
        barrier.wait()
        try:
            hv.ensure_pool("vmshadow-race", folder)
        except BaseException as exc:  # collected: the assertion names it
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(hv,)) for hv in conns]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
    finally:
        pool = conns[0]._conn.storagePoolLookupByName("vmshadow-race")
        pool.destroy()
        pool.undefine()
        for hv in conns:
            hv.close()


def test_a_throw_away_folders_pools_go_with_it_and_no_other(tmp_path: Path) -> None:
    """A bench's or a test's data folder defines pools of its own: dropping the
    folder's pools removes those (active or not) and leaves every other one."""
    with LibvirtHypervisor("test:///default") as hv:
        hv.ensure_pool("vmshadow-drop-a", tmp_path / "run" / "a")
        hv.ensure_pool("vmshadow-drop-b", tmp_path / "run" / "b" / "deeper")
        hv.ensure_pool("vmshadow-drop-keep", tmp_path / "other")
        try:
            assert sorted(hv.drop_pools_under(tmp_path / "run")) == [
                "vmshadow-drop-a",
                "vmshadow-drop-b",
            ]
            names = {p.name() for p in hv._conn.listAllStoragePools(0)}
            assert "vmshadow-drop-keep" in names and "vmshadow-drop-a" not in names
            assert hv.drop_pools_under(tmp_path / "run") == []
        finally:
            hv.drop_pools_under(tmp_path)
