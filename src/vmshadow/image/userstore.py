"""Users' VM images: files in vmshadow's image store, named, never a host path.

A transition names a user image by its name in the store
(``Settings.user_images_dir``), and this module is the only way from that name
to a file. Everything a caller could use to make QEMU, running as root's
delegate, read another host file is refused here, before anything is created:

- a name that is a path (``/etc/shadow``, ``../x``): names are one plain word;
- a symbolic link, or a link-like path, that resolves outside the store
  (checked on the ``realpath``, so ``store/a -> /etc/shadow`` is caught);
- anything but a regular file with one link (a device, FIFO, folder, or a
  hard link that may be a host file under another name);
- a format other than qcow2 or raw, as ``qemu-img info`` reads it from the
  content: a suffix says nothing (``x.qcow2`` may be raw);
- a backing file or external data file that is not itself a store image by
  the same rules, a backing file without a recorded format (QEMU would probe
  it, and a raw file whose first bytes look like qcow2 then reads its
  "backing file" from the host), and protocol names (``nbd:``, ``json:``).

The check runs when a transition is created (a 422 naming ``image``) and again
when the VM is defined, since the store may change in between.
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmshadow.domain.errors import ConfigError, HypervisorError

FORMATS = ("qcow2", "raw")
BUILTIN = "builtin"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# A protocol prefix (nbd:, json:, http:, file:): never a plain file in the store.
_PROTOCOL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
MAX_CHAIN = 8  # deeper chains are not something a user imports; a loop would be endless
INFO_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class UserImage:
    """A checked store image: its resolved file, content format and whole chain."""

    name: str
    path: Path
    format: str
    virtual_size: int
    chain: tuple[tuple[Path, str], ...]  # (file, format), this image first

    @property
    def backing(self) -> tuple[tuple[Path, str], ...]:
        return self.chain[1:]


def check_image_name(name: str) -> str:
    """``name`` if it can name a store image (or is ``builtin``); else ConfigError."""
    if name == BUILTIN or NAME_RE.fullmatch(name):
        return name
    raise ConfigError(
        "image",
        f"{name[:200]!r} is not an image name: give 'builtin' or the name of an image in "
        "vmshadow's image store (letters, digits, '.', '_', '-'; never a path)",
    )


def resolve_user_image(store_dir: Path, name: str) -> UserImage:
    """The store image ``name``, checked with its whole chain; ConfigError naming ``image``."""
    check_image_name(name)
    if name == BUILTIN:
        raise ConfigError("image", "'builtin' is vmshadow's own image, not a store image")
    store = Path(os.path.realpath(store_dir))
    if not store.is_dir():
        raise ConfigError("image", f"no image {name!r}: the image store {store} does not exist")
    chain: list[tuple[Path, str]] = []
    top = _member(store, store / name, what=f"image {name!r}")
    size = _check_chain(store, top, chain)
    return UserImage(name=name, path=top, format=chain[0][1], virtual_size=size, chain=tuple(chain))


def list_user_images(store_dir: Path) -> list[str]:
    """Names of the regular files in the store (not checked: see ``resolve_user_image``)."""
    if not store_dir.is_dir():
        return []
    return sorted(p.name for p in store_dir.iterdir() if NAME_RE.fullmatch(p.name) and p.is_file())


def _member(store: Path, candidate: Path, *, what: str) -> Path:
    """``candidate`` resolved, if it is a plain, single-link regular file inside ``store``."""
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(store) or real == store:
        raise ConfigError("image", f"{what} resolves outside the image store {store}")
    try:
        st = real.stat()
    except FileNotFoundError:
        raise ConfigError("image", f"{what} is not in the image store {store}") from None
    except OSError as exc:
        raise ConfigError("image", f"{what} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            "image", f"{what} is not a regular file (a device, FIFO or folder is never an image)"
        )
    if st.st_nlink != 1:
        raise ConfigError(
            "image", f"{what} has {st.st_nlink} hard links: it may be another file's name"
        )
    return real


def _check_chain(store: Path, top: Path, chain: list[tuple[Path, str]]) -> int:
    """Walk ``top`` and its backing files into ``chain``; returns the top's virtual size."""
    current: Path | None = top
    top_size = 0
    expected_format: str | None = None
    while current is not None:
        if any(current == seen for seen, _fmt in chain):
            raise ConfigError("image", f"the backing chain of {top.name} loops at {current}")
        if len(chain) >= MAX_CHAIN:
            raise ConfigError("image", f"the backing chain of {top.name} is over {MAX_CHAIN} deep")
        info = _header_of(current)
        fmt = str(info.get("format", ""))
        if fmt not in FORMATS:
            raise ConfigError(
                "image", f"{current.name} is {fmt or 'of no known format'}: only qcow2 or raw"
            )
        if expected_format is not None and fmt != expected_format:
            raise ConfigError(
                "image",
                f"{current.name} is {fmt}, but its parent records it as {expected_format}",
            )
        if current == top:
            top_size = int(info.get("virtual-size", 0))
        chain.append((current, fmt))
        data_file = _data_file(info)
        if data_file is not None:
            _member(store, _relative_to(current, data_file), what=f"the data file of {current}")
        backing = info.get("backing-filename")
        if backing is None:
            current = None
            continue
        expected_format = info.get("backing-filename-format")
        if expected_format not in FORMATS:
            raise ConfigError(
                "image",
                f"{current.name} has a backing file without a qcow2 or raw format recorded "
                "(QEMU would guess it)",
            )
        current = _member(
            store, _relative_to(current, str(backing)), what=f"the backing file of {current.name}"
        )
    return top_size


def _relative_to(image: Path, name: str) -> Path:
    """A backing or data file name as QEMU reads it: relative to the image's folder."""
    if _PROTOCOL_RE.match(name):
        raise ConfigError(
            "image", f"{image.name} refers to {name[:100]!r}: only files in the store"
        )
    return image.parent / name


def data_file_of(info: dict[str, Any]) -> str | None:
    """The external data file ``qemu-img info`` names for an image; None without one."""
    return _data_file(info)


def _data_file(info: dict[str, Any]) -> str | None:
    specific = info.get("format-specific")
    if not isinstance(specific, dict):
        return None
    data = specific.get("data")
    if not isinstance(data, dict):
        return None
    name = data.get("data-file")
    return str(name) if name else None


# A file's header by what identifies its contents: device, inode, size and
# both times (ctime moves on any write or metadata change, and no one but the
# kernel sets it). Every launch that names a store image walks its chain, and
# the qemu-img run per file was 60 % of a create's time (8 of 13 ms); a file
# that changed in any way has a new key and is read again.
_Key = tuple[int, int, int, int, int]
_headers: dict[tuple[Path, _Key], dict[str, Any]] = {}
_headers_lock = threading.Lock()
HEADERS_KEPT = 256
RACY_NS = 2_000_000_000


def _header_of(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except OSError:
        return qemu_img_info(path)  # which says why, naming the image
    key = (path, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    with _headers_lock:
        known = _headers.get(key)
    if known is not None:
        return copy.deepcopy(known)
    info = qemu_img_info(path)
    if time.time_ns() - st.st_ctime_ns < RACY_NS:
        # File times move in kernel ticks: a write in the tick after this read
        # could keep the same key (git's "racy" files). Kept only once older.
        return info
    with _headers_lock:
        if len(_headers) >= HEADERS_KEPT:
            _headers.clear()  # a store of hundreds of images is read again, once
        _headers[key] = copy.deepcopy(info)
    return info


def qemu_img_info(path: Path) -> dict[str, Any]:
    """``qemu-img info --output=json`` of one file (not its chain, which is walked by us).

    ``-U`` because a running VM holds a lock on an image it uses; reading the
    header needs no lock. The time limit covers a data file that blocks on open.
    """
    cmd = ["qemu-img", "info", "-U", "--output=json", str(path)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=INFO_TIMEOUT_S
        )
    except FileNotFoundError as exc:
        raise HypervisorError("qemu-img is not installed: run the README set-up command") from exc
    except subprocess.TimeoutExpired as exc:
        raise ConfigError("image", f"qemu-img could not read {path.name} in time") from exc
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1:] or ["unknown error"]
        raise ConfigError("image", f"{path.name} is not a readable image: {reason[0][:300]}")
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise HypervisorError(f"qemu-img info printed no JSON for {path}: {exc}") from exc
    if not isinstance(info, dict):
        raise HypervisorError(f"qemu-img info printed no object for {path}")
    return info
