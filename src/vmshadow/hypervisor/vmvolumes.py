"""The volumes of a VM from a store image: its root disk and its cloud-init seed.

Both live in vmshadow's disk pool (``vm.disks_pool``), named after the VM and
its transition (``domain.vm.VmVolumes``), so that a volume that exists is this
transition's own and a repeated define after a crash reuses it, and so that
``virsh vol-list`` shows them and ``virsh undefine --remove-all-storage``
removes them. Removal deletes only volumes with those two names: a disk the
user attached to the VM by hand is theirs.
"""

from __future__ import annotations

import contextlib
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from vmshadow.domain.errors import ConfigError, HypervisorError
from vmshadow.domain.vm import BuiltinImage, DiskImage, FullVmSpec, VmVolumes
from vmshadow.hypervisor.fullvmxml import store_volumes
from vmshadow.hypervisor.port import StorageHost
from vmshadow.image.guestseed import write_vm_seed
from vmshadow.image.userstore import qemu_img_info

GIB = 2**30


def root_capacity(spec: FullVmSpec) -> int:
    """Bytes of the root disk: ``--disk`` when given, else the image's own size."""
    assert isinstance(spec.image, DiskImage) and spec.guest is not None
    size = spec.image.virtual_size
    if spec.guest.disk_gib is None:
        return size
    want = spec.guest.disk_gib * GIB
    if want < size:
        raise ConfigError(
            "disk_gib",
            f"{spec.guest.disk_gib} GiB is smaller than the image's {size / GIB:.1f} GiB: "
            "a disk can grow from its image, never shrink",
        )
    return want


def prepare_builtin_root(storage: StorageHost, spec: FullVmSpec, root: Path) -> list[Path]:
    """The built-in image's root disk as a volume of the disk pool (the scratch
    disk waits for the start: a pending VM holds no scratch space)."""
    assert isinstance(spec.image, BuiltinImage) and spec.volumes is not None
    pool = spec.volumes.pool
    storage.ensure_pool(pool, spec.volumes.directory)
    if root.name in storage.pool_volumes(pool):
        return []
    size = int(qemu_img_info(spec.image.base).get("virtual-size", 0))
    storage.create_overlay_volume(pool, root.name, spec.image.base, "qcow2", size)
    return [root]


def refresh_pool_of(conn: Any, path: Path) -> None:
    """Let the pool holding ``path`` see it (a file vmshadow wrote itself)."""
    with contextlib.suppress(libvirt.libvirtError):
        conn.storagePoolLookupByTargetPath(str(path.parent)).refresh(0)


def prepare_store_disks(storage: StorageHost, spec: FullVmSpec) -> list[Path]:
    """Make the root volume and the seed unless they exist; returns what it made.

    On an error nothing it made is left behind.
    """
    assert isinstance(spec.image, DiskImage) and spec.guest is not None
    assert spec.volumes is not None
    pool = spec.volumes.pool
    storage.ensure_pool(pool, spec.volumes.directory)
    root, seed = store_volumes(spec)
    made: list[Path] = []
    try:
        if not storage.has_volume(pool, root.name):
            storage.create_overlay_volume(
                pool, root.name, spec.image.path, spec.image.format, root_capacity(spec)
            )
            made.append(root)
        if not storage.has_volume(pool, seed.name):
            made.append(seed)
            write_vm_seed(
                seed,
                spec.guest,
                hostname=spec.name,
                # cloud-init runs its once-per-instance modules for a new id only:
                # a restart or a resize of the same VM does not set it up again.
                instance_id=f"vmshadow-{spec.transition_id}",
            )
            storage.refresh_pool(pool)
    except BaseException:
        for path in made:
            with contextlib.suppress(HypervisorError):
                storage.delete_volume(pool, path.name)
            path.unlink(missing_ok=True)
        raise
    return made


def remove_store_disks(conn: Any, xml: str, name: str, transition_id: str) -> None:
    """Delete the VM's root and seed volumes named in ``xml`` (its definition)."""
    ours = {
        VmVolumes.root_name(name, transition_id),
        VmVolumes.seed_name(name, transition_id),
        VmVolumes.scratch_name(name, transition_id),
    }
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    for source in root.findall("devices/disk/source"):
        path = source.get("file")
        if not path or Path(path).name not in ours:
            continue
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            # Not (or no longer) a pool volume: the file alone, if it is there.
            Path(path).unlink(missing_ok=True)
            continue
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot delete volume {path} of VM {name}: {exc}") from exc


def free_loopback_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
