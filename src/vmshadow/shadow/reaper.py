"""Find and destroy shadows whose owner died (kill -9, power loss).

Each shadow records ``host:pid`` of the process that started it in its libvirt
metadata and in an ``owner`` file in its run folder; a shadow whose owner on
this host no longer runs is an orphan. Folders are swept too, for the owner
that died before its domain existed or after it was gone, and so are the
half-made templates (``<data_dir>/templates/.build-*``) of a process that
died while saving one: a template being saved is the session's own shadow
domain, reaped like any other.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from vmshadow.hypervisor.port import Hypervisor
from vmshadow.shadow.session import OWNER_FILE
from vmshadow.shadow.templates import BUILD_PREFIX, TEMPLATES_DIR


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs under ``pid`` (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(owner: str) -> bool:
    """True when ``host:pid`` names a process of this host that no longer runs."""
    host, _, pid = owner.strip().partition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def reap_orphans(hv: Hypervisor, runs_dir: Path | None = None, *, force: bool = False) -> list[str]:
    """Destroy shadows whose owning process on this host is gone (or all, with force).

    Returns the names of the domains destroyed and the run folders removed.
    """
    reaped = []
    for name, meta in hv.list_shadows():
        if not (force or not meta.owner or _owner_gone(meta.owner)):
            continue
        hv.destroy(name)
        if meta.run_dir:
            shutil.rmtree(meta.run_dir, ignore_errors=True)
        reaped.append(name)
    if runs_dir is not None:
        reaped += _sweep(sorted(runs_dir.iterdir()) if runs_dir.is_dir() else [], force=force)
        # The templates sit beside the runs, in the data folder.
        templates = runs_dir.parent / TEMPLATES_DIR
        builds = sorted(templates.glob(f"{BUILD_PREFIX}*")) if templates.is_dir() else []
        # A build in progress is never forced away: its owner holds the key's lock.
        reaped += _sweep(builds, force=False)
    return reaped


def _sweep(folders: list[Path], *, force: bool) -> list[str]:
    """Remove the folders whose recorded owner is gone (all that record one, with force)."""
    reaped = []
    for folder in folders:
        try:
            owner = (folder / OWNER_FILE).read_text()
        except OSError:
            continue  # not ours, or being created this instant: leave it
        if force or _owner_gone(owner):
            shutil.rmtree(folder, ignore_errors=True)
            reaped.append(str(folder))
    return reaped
