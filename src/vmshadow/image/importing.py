"""Importing one image into the store: what is checked, and the file it is written to.

The checks of ``vmshadow image add`` and ``PUT /api/v1/images/{name}`` on
what they were given (a name, an OS variant, a default user, a file), before
``image.catalog`` makes the written copy a store image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.vm import USER_NAME_RE
from vmshadow.image.userstore import BUILTIN, FORMATS, NAME_RE, data_file_of, qemu_img_info

# An osinfo short ID (``debian12``, ``ubuntu22.04``, ``rhel9.2``): one plain word.
OS_VARIANT_RE = re.compile(r"[a-z][a-z0-9._-]{0,63}")
# The user the well-known cloud images create, by the start of their OS variant.
DEFAULT_USERS = (
    ("debian", "debian"),
    ("ubuntu", "ubuntu"),
    ("fedora", "fedora"),
    ("centos", "cloud-user"),
    ("rhel", "cloud-user"),
    ("rocky", "cloud-user"),
    ("almalinux", "cloud-user"),
)
CHUNK = 1 << 20
_ZEROS = bytes(CHUNK)


def check_new_name(name: str) -> str:
    if name != BUILTIN and NAME_RE.fullmatch(name):
        return name
    raise ConfigError(
        "name",
        f"{name[:200]!r} is not a name for a store image: 1-128 letters, digits, '.', '_' "
        "or '-', starting with a letter or digit, never a path, and not 'builtin'",
    )


def check_os_variant(value: str | None) -> str | None:
    if value is None or OS_VARIANT_RE.fullmatch(value):
        return value
    raise ConfigError(
        "os_variant", f"{value[:100]!r} is not an OS variant: an osinfo ID such as debian12"
    )


def check_default_user(value: str | None) -> str | None:
    if value is None or (USER_NAME_RE.fullmatch(value) and value != "root"):
        return value
    raise ConfigError(
        "default_user",
        f"{value[:100]!r} is not a user name: lower-case letters, digits, '_' and '-', "
        "starting with a letter or '_', at most 32, and not root",
    )


def default_user_for(os_variant: str | None) -> str | None:
    for prefix, user in DEFAULT_USERS:
        if os_variant is not None and os_variant.startswith(prefix):
            return user
    return None


def check_standalone(path: Path, shown: str, what: str = "file") -> dict[str, Any]:
    """``qemu-img info`` of an import's copy, if it is an image that stands alone."""
    try:
        info = qemu_img_info(path)
    except ConfigError as exc:
        raise ConfigError(what, exc.reason.replace(path.name, shown)) from None
    fmt = str(info.get("format", ""))
    if fmt not in FORMATS:
        raise ConfigError(what, f"{shown} is {fmt or 'of no known format'}: only qcow2 or raw")
    # A backing or data file is a host path QEMU would open when the VM boots.
    backing = info.get("backing-filename") or info.get("full-backing-filename")
    if backing:
        raise ConfigError(
            what,
            f"{shown} has a backing file (backing-filename {str(backing)[:100]!r}): an "
            "imported image must stand alone; flatten it with qemu-img convert -O qcow2",
        )
    data = data_file_of(info)
    if data:
        raise ConfigError(
            what,
            f"{shown} has an external data file (data-file {data[:100]!r}): an imported "
            "image must stand alone; flatten it with qemu-img convert -O qcow2",
        )
    if info.get("encrypted"):
        raise ConfigError(what, f"{shown} is encrypted (encrypted): QEMU could not boot it")
    return info


class Partial:
    """A hidden, private file in the store that an import is written into.

    Runs of zeros are skipped rather than written, so a sparse raw image stays
    sparse in the store; the sha256 covers every byte.
    """

    def __init__(self, store: Path, name: str) -> None:
        fd, path = tempfile.mkstemp(prefix=f".{name}.partial-", dir=store)  # O_EXCL, 0600
        self.path = Path(path)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        zeros = _ZEROS if len(data) == CHUNK else bytes(len(data))
        if data == zeros:
            self._file.seek(len(data), os.SEEK_CUR)
        else:
            self._file.write(data)

    def close(self) -> str:
        """Flush the file to disk; its sha256."""
        if not self._file.closed:
            self._file.truncate(self.size)  # a trailing run of zeros was only a seek
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


def open_source(source: Path) -> int:
    """A descriptor of ``source`` if it is a regular file, opened without following
    a final symbolic link (checked before opening: opening a device can act)."""
    try:
        before = os.lstat(source)
    except OSError as exc:
        raise ConfigError("file", f"{source} cannot be read: {exc.strerror}") from None
    if stat.S_ISLNK(before.st_mode):
        raise ConfigError("file", f"{source} is a symbolic link: give the image file itself")
    if not stat.S_ISREG(before.st_mode):
        raise ConfigError(
            "file", f"{source} is not a regular file (a device, FIFO or folder is never an image)"
        )
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError("file", f"{source} cannot be read: {exc.strerror}") from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(now.st_mode):
        os.close(fd)
        raise ConfigError("file", f"{source} changed while it was opened: try again")
    return fd
