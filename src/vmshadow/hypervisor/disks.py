"""The disks vmshadow makes: a copy-on-write overlay of a base image (a shadow's root,
a built-in full VM's) and a raw scratch disk for I/O phases."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vmshadow.domain.errors import HypervisorError


def _qemu_img(*args: str) -> None:
    try:
        proc = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise HypervisorError("qemu-img is not installed: run the README set-up command") from exc
    if proc.returncode != 0:
        raise HypervisorError(f"qemu-img {args[0]} failed: {proc.stderr.strip()}")


def create_overlay(base: Path, overlay: Path, *, backing_format: str = "qcow2") -> None:
    """A qcow2 overlay: the VM writes here, never to the shared base."""
    _qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", backing_format, str(overlay))


def create_scratch(path: Path, size_mib: int) -> None:
    """A raw disk for I/O phases, fully allocated so fio measures the disk, not allocation.

    posix_fallocate reserves the blocks without writing them, which is fast, and
    fails at once with ENOSPC when the host disk is too full: better than a
    shadow dying halfway through its I/O phase.
    """
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size_mib * 2**20)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise HypervisorError(f"cannot allocate {size_mib} MiB scratch disk {path}: {exc}") from exc
    os.close(fd)
