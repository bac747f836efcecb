"""libvirt storage pools: the image store and the VMs' disks, as libvirt sees them.

Two directory pools (``vm.images_pool`` over the image store, ``vm.disks_pool``
over ``data_dir/vm-disks``) so that every volume vmshadow makes or imports is
one ``virsh vol-list`` shows and ``virsh undefine --remove-all-storage``
removes, as with virt-install's pools. vmshadow makes the folders itself
(0750, group QEMU's, see ``hypervisor.filemodes``) and never asks libvirt to
*build* a pool: building a directory pool sets the folder's mode to libvirt's
0711 default, and a pool over a folder someone else owns is refused instead.

A mixin of ``LibvirtHypervisor``: it uses its connection, and translates
every libvirt error into ``HypervisorError`` naming the pool or volume.
"""

from __future__ import annotations

import contextlib
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt

from vmshadow.domain.errors import HypervisorError
from vmshadow.hypervisor.domainxml import _sub
from vmshadow.hypervisor.filemodes import private_dir

_SETUP_ATTEMPTS = 4


def pool_xml(name: str, path: Path) -> str:
    pool = ET.Element("pool", type="dir")
    _sub(pool, "name", name)
    target = _sub(pool, "target")
    _sub(target, "path", str(path))
    return ET.tostring(pool, encoding="unicode")


def overlay_volume_xml(name: str, backing: Path, backing_format: str, capacity_bytes: int) -> str:
    """A qcow2 volume backed by ``backing`` (libvirt runs ``qemu-img create -b -F``)."""
    vol = ET.Element("volume", type="file")
    _sub(vol, "name", name)
    _sub(vol, "capacity", str(capacity_bytes), unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type="qcow2")
    # libvirt writes qcow2 v2 (compat 0.10) unless told; v3 is what qemu-img
    # and every cloud image use (lazy refcounts, zero clusters).
    _sub(target, "compat", "1.1")
    perms = _sub(target, "permissions")
    _sub(perms, "mode", "0600")
    store = _sub(vol, "backingStore")
    _sub(store, "path", str(backing))
    _sub(store, "format", type=backing_format)
    return ET.tostring(vol, encoding="unicode")


def disk_files(xml: str) -> list[Path]:
    """Every file a domain's disks name: each disk's source and its whole
    ``backingStore`` chain, as written in the definition (libvirt's own XML)."""
    root = ET.fromstring(xml)  # noqa: S314 - libvirt's own output
    files = []
    for disk in root.findall("devices/disk"):
        for source in disk.iter("source"):
            name = source.get("file")
            if name:
                files.append(Path(name))
    return files


def _target_path(pool: Any) -> Path:
    root = ET.fromstring(pool.XMLDesc(0))  # noqa: S314 - libvirt's own output
    return Path(root.findtext("target/path") or "")


class StorageMixin:
    _conn: Any

    def drop_pools_under(self, folder: Path) -> list[str]:
        """Stop and undefine every storage pool over ``folder`` or below it: a
        throw-away data folder (a bench's, a test's) gets pools of its own, which
        would outlive the folder otherwise. Its volumes are the folder's files."""
        folder = Path(os.path.realpath(folder))
        dropped = []
        try:
            for pool in self._conn.listAllStoragePools(0):
                if _target_path(pool).is_relative_to(folder):
                    if pool.isActive():
                        pool.destroy()
                    pool.undefine()
                    dropped.append(str(pool.name()))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot remove the storage pools under {folder}: {exc}") from exc
        return dropped

    def ensure_pool(self, name: str, path: Path) -> None:
        """Define, start and autostart the directory pool ``name`` over ``path``.

        Safe to repeat. A pool of that name over another folder is refused:
        two vmshadow installs (or a test's data dir) must name their own pools.
        """
        path = Path(os.path.realpath(path))
        if not path.is_dir():
            with contextlib.suppress(FileExistsError):  # made by another process just now
                path.mkdir(parents=True, mode=0o700)
                private_dir(path)
        # Several controllers (or a controller and the CLI) set the pool up at
        # the same moment: the loser's define or start fails because the
        # winner's succeeded. Looking again sees the pool as it now is.
        for attempt in range(_SETUP_ATTEMPTS):
            try:
                self._ensure_pool_once(name, path)
                return
            except libvirt.libvirtError as exc:
                if attempt == _SETUP_ATTEMPTS - 1:
                    raise HypervisorError(f"cannot set up the storage pool {name}: {exc}") from exc
                time.sleep(0.2 * (attempt + 1))

    def _ensure_pool_once(self, name: str, path: Path) -> None:
        try:
            pool = self._conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            pool = self._conn.storagePoolDefineXML(pool_xml(name, path), 0)
        have = _target_path(pool)
        if os.path.realpath(have) != str(path):
            raise HypervisorError(
                f"the libvirt storage pool {name} is over {have}, not {path}: "
                "name another pool in vmshadow's settings (vm.images_pool, vm.disks_pool)"
            )
        if not pool.isActive():
            try:
                pool.create(0)
            except libvirt.libvirtError:
                if not pool.isActive():
                    raise
        if not pool.autostart():
            pool.setAutostart(1)
        pool.refresh(0)

    def images_in_use(self, store_dir: Path) -> dict[Path, list[str]]:
        """Each file of ``store_dir`` some defined domain's disks name (as a
        source or anywhere in a backing chain) -> those domains' names.

        Every domain, not only vmshadow's: an image is in use whoever defined
        the VM. Both definitions of a running domain are read, since a VM
        redefined while running boots the new one next. Paths are compared
        resolved, so a store reached through a symbolic link still matches.
        """
        store = Path(os.path.realpath(store_dir))
        try:
            domains = self._conn.listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list domains: {exc}") from exc
        found: dict[Path, list[str]] = {}
        for dom in domains:
            try:
                name = dom.name()
                xmls = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)]
                if dom.isActive():
                    xmls.append(dom.XMLDesc(0))
            except libvirt.libvirtError:
                continue  # undefined while we looked: it uses nothing any more
            for xml in xmls:
                for file in disk_files(xml):
                    real = Path(os.path.realpath(file))
                    if real.parent == store and name not in found.setdefault(real, []):
                        found[real].append(name)
        return found

    def _pool(self, name: str) -> Any:
        try:
            pool = self._conn.storagePoolLookupByName(name)
            if not pool.isActive():
                pool.create(0)
            return pool
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"storage pool {name} is not available: {exc}") from exc

    def refresh_pool(self, name: str) -> None:
        """Let libvirt see files vmshadow wrote into the pool's folder itself."""
        try:
            self._pool(name).refresh(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot refresh the storage pool {name}: {exc}") from exc

    def has_volume(self, pool_name: str, volume: str) -> bool:
        """Whether the pool holds ``volume``, as libvirt knows it (no refresh:
        a refresh rescans the whole folder, and a store VM's define asked this
        of a pool of thousands of volumes)."""
        pool = self._pool(pool_name)
        try:
            pool.storageVolLookupByName(volume)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise HypervisorError(f"cannot look up {volume} in {pool_name}: {exc}") from exc
        return True

    def pool_volumes(self, name: str) -> dict[str, Path]:
        """Volume name -> path, as libvirt lists them."""
        pool = self._pool(name)
        try:
            pool.refresh(0)
            return {v.name(): Path(v.path()) for v in pool.listAllVolumes(0)}
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot list the volumes of {name}: {exc}") from exc

    def create_overlay_volume(
        self, pool_name: str, volume: str, backing: Path, backing_format: str, capacity: int
    ) -> Path:
        """A new qcow2 volume over ``backing`` of ``capacity`` bytes; its path.

        Refuses a volume that exists: the caller names volumes so that one that
        exists is its own (and then does not ask again).
        """
        pool = self._pool(pool_name)
        xml = overlay_volume_xml(volume, backing, backing_format, capacity)
        try:
            vol = pool.createXML(xml, 0)
            return Path(vol.path())
        except libvirt.libvirtError as exc:
            raise HypervisorError(
                f"cannot create volume {volume} in {pool_name}: {exc.get_error_message()}"
            ) from exc

    def delete_volume(self, pool_name: str, volume: str) -> bool:
        """Delete one volume; False if it was not there."""
        pool = self._pool(pool_name)
        try:
            with contextlib.suppress(libvirt.libvirtError):
                pool.refresh(0)
            vol = pool.storageVolLookupByName(volume)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise HypervisorError(f"cannot find volume {volume} in {pool_name}: {exc}") from exc
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"cannot delete volume {volume} of {pool_name}: {exc}") from exc
        return True
