"""A full VM's folder: made by one transition, reused only by it, emptied of its files alone.

The folder's first file records the transition that made it. Without that
record a folder is someone else's (a planted ``root.qcow2`` backed by a host
file would otherwise become the new VM's disk): it is never adopted, and
nothing in it is deleted.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vmshadow.domain.errors import HypervisorError
from vmshadow.hypervisor.filemodes import make_private_dir, private_dir
from vmshadow.hypervisor.fullvmxml import CONSOLE_LOG, OWNER_FILE, ROOT_DISK, SCRATCH_DISK


def claim_vm_dir(vm_dir: Path, transition_id: str) -> bool:
    """Make ``vm_dir`` for ``transition_id`` (True), or accept it as that one's (False).

    Raises HypervisorError when the folder exists and is not this transition's.
    """
    if not vm_dir.parent.exists():
        # Several controllers define their first VMs at once: another may make
        # the folder between the check and the mkdir ("File exists" failed a
        # transition in the fleet fail-over test).
        vm_dir.parent.mkdir(parents=True, exist_ok=True)
        private_dir(vm_dir.parent)
    if make_private_dir(vm_dir, exist_ok=True):
        fd = os.open(vm_dir / OWNER_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(transition_id + "\n")
        return True
    if _folder_owner(vm_dir) != transition_id:
        raise HypervisorError(
            f"the folder {vm_dir} already exists and was not made for transition "
            f"{transition_id}: move it away or choose another name"
        )
    return False


def _folder_owner(vm_dir: Path) -> str | None:
    """The transition that made ``vm_dir``, from the file it wrote there; None if none did."""
    try:
        return (vm_dir / OWNER_FILE).read_text().strip() or None
    except OSError:
        return None


def remove_vm_dir(vm_dir: Path, transition_id: str) -> None:
    """Delete the files vmshadow made in the VM's folder, and the folder once empty.

    Only in a folder this transition made (the path comes from the domain's
    metadata, which anyone who can define domains can write), and only the
    files vmshadow writes there: anything else someone put beside them stays.
    """
    if _folder_owner(vm_dir) != transition_id:
        return
    for f in (ROOT_DISK, SCRATCH_DISK, CONSOLE_LOG, OWNER_FILE):
        (vm_dir / f).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        vm_dir.rmdir()
