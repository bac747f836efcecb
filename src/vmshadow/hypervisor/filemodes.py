"""Modes of the folders and disks QEMU uses: private to root and QEMU.

A VM's disk holds whatever its user put there, so no other local user may
read it: disks are 0600 and their folders 0750, group QEMU's (libvirt's DAC
driver gives QEMU each disk while the VM runs, and hands it back after, but
never the folders, which QEMU must still be able to enter). Under
``qemu:///session`` QEMU runs as the caller, who owns both already.
"""

from __future__ import annotations

import contextlib
import grp
import os
import stat
from functools import cache
from pathlib import Path

# The group qemu.conf names by default: Debian's first, then Fedora's and RHEL's.
_QEMU_GROUPS = ("libvirt-qemu", "qemu")
DIR_MODE = 0o750
DISK_MODE = 0o600


@cache
def qemu_gid() -> int | None:
    """The QEMU processes' group on this host; None where there is none."""
    for name in _QEMU_GROUPS:
        with contextlib.suppress(KeyError):
            return grp.getgrnam(name).gr_gid
    return None


def private_dir(path: Path) -> None:
    """``path`` (a folder vmshadow made) to 0750, group QEMU's when root made it.

    Where no QEMU group exists and we are root, QEMU (some other user) must
    still reach the disks: the folder stays 0755, as before this check.
    """
    gid = qemu_gid() if os.geteuid() == 0 else None
    if os.geteuid() == 0 and gid is None:
        _set(path, 0o755)
        return
    _set(path, DIR_MODE, group=gid)


def make_private_dir(path: Path, *, exist_ok: bool = False) -> bool:
    """Create ``path`` (not its parents) private; False if it existed (with ``exist_ok``).

    ``mkdir`` is atomic: of two callers making the same folder, one gets False.
    """
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if exist_ok:
            return False
        raise
    private_dir(path)
    return True


def qemu_readable(path: Path) -> None:
    """A shared, read-only image (a backing file): root's, readable by QEMU's group alone.

    Domains name backing files with ``relabel='no'`` (libvirt would otherwise
    give them to QEMU's user for good), so QEMU reads them through the group.
    """
    gid = qemu_gid() if os.geteuid() == 0 else None
    if os.geteuid() == 0 and gid is None:
        _set(path, 0o444)
        return
    _set(path, 0o440, owner=0 if gid is not None else None, group=gid)


def _set(path: Path, mode: int, *, owner: int | None = None, group: int | None = None) -> None:
    """Change what differs, and only that: a chown or chmod moves the file's
    ctime even when it changes nothing, and an image's checked header is kept
    by its ctime (``image.userstore``): every launch re-read every image's
    chain with ``qemu-img`` while each one re-applied the same modes."""
    st = path.stat()
    if (owner is not None and st.st_uid != owner) or (group is not None and st.st_gid != group):
        os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
    if stat.S_IMODE(st.st_mode) != mode:
        path.chmod(mode)


def private_disk(path: Path) -> None:
    """A disk file vmshadow made: readable and writable by its owner only."""
    path.chmod(DISK_MODE)
