"""Find and destroy shadows whose owner died (kill -9, power loss).

Each shadow records ``host:pid`` of the process that started it in its libvirt
metadata; a shadow whose owner on this host no longer runs is an orphan.
"""

from __future__ import annotations

import os
import shutil
import socket

from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(hv: LibvirtHypervisor, *, force: bool = False) -> list[str]:
    """Destroy shadows whose owning process on this host is gone (or all, with force)."""
    reaped = []
    me = socket.gethostname()
    for name, meta in hv.list_shadows():
        host, _, pid = meta.owner.partition(":")
        orphan = (
            force or not meta.owner or (host == me and pid.isdigit() and not _pid_alive(int(pid)))
        )
        if not orphan:
            continue
        hv.destroy(name)
        if meta.run_dir:
            shutil.rmtree(meta.run_dir, ignore_errors=True)
        reaped.append(name)
    return reaped
