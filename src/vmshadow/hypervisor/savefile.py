"""libvirt's QEMU save file: its header, and the domain XML inside it, rewritten.

A template (``shadow.templates``) is one saved state that every shadow of an
image restores. libvirt 9.0 refuses to restore a saved state under another
name or UUID than the one in the file's header ("Target domain uuid/name ...
does not match source"), so each restore needs the header to name the shadow
being started. The layout (``src/qemu/qemu_saveimage.[ch]`` in libvirt):

    char     magic[16]        "LibvirtQemudSave" ("LibvirtQemudPart": unfinished)
    uint32   version          2 (1: no compression field, no cookie)
    uint32   data_len         the region after the header, padded by libvirt
    uint32   was_running
    uint32   format           0 raw, else the compressor QEMU's stream went through
    uint32   cookieOffset     where the cookie starts in the region (0: none)
    uint32   unused[14]
    data_len bytes            domain XML, NUL; the cookie, NUL; zeros
    ...                       QEMU's migration stream

libvirt itself (``virQEMUSaveDataWrite``, used by ``save-image-define``)
rewrites the region in place the same way: XML, then the cookie right after
it, ``cookieOffset`` moved, the rest zeros, ``data_len`` unchanged, so the
migration stream never moves. The header is little-endian on every host we
run on; a byte-swapped file (written on a big-endian host) is refused.

Nothing here touches libvirt: the adapter (``hypervisor.saverestore``) does
the swap under a lock and puts the original region back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import HypervisorError

MAGIC = b"LibvirtQemudSave"
PARTIAL = b"LibvirtQemudPart"
_HEADER = struct.Struct("<16s5I14I")
HEADER_SIZE = _HEADER.size  # 92
MAX_VERSION = 2
# A header libvirt wrote holds the XML, a cookie and 64 KiB of padding; a
# region far larger than that is not a header we understand.
MAX_DATA_LEN = 16 * 2**20


@dataclass(frozen=True)
class SaveHeader:
    """A parsed header and its region, exactly as read."""

    version: int
    data_len: int
    was_running: int
    format: int
    cookie_offset: int
    xml: str
    cookie: bytes  # the cookie's text without its NUL; empty when there is none

    @property
    def region_size(self) -> int:
        """Bytes from the start of the file to the start of QEMU's stream."""
        return HEADER_SIZE + self.data_len


def parse_region(region: bytes, *, where: str = "the save file") -> SaveHeader:
    """Parse a header and its data region; ``HypervisorError`` if it is not one."""
    if len(region) < HEADER_SIZE:
        raise HypervisorError(f"{where} is not a libvirt save image: it is too short")
    magic, version, data_len, running, fmt, cookie_at, *_ = _HEADER.unpack_from(region)
    if magic == PARTIAL:
        raise HypervisorError(f"{where} is an unfinished libvirt save image")
    if magic != MAGIC:
        raise HypervisorError(f"{where} is not a libvirt save image (magic {magic[:16]!r})")
    if not 1 <= version <= MAX_VERSION:
        raise HypervisorError(f"{where} has save image version {version}, not 1..{MAX_VERSION}")
    if not 0 < data_len <= MAX_DATA_LEN or len(region) < HEADER_SIZE + data_len:
        raise HypervisorError(f"{where} has an invalid header data length {data_len}")
    data = region[HEADER_SIZE : HEADER_SIZE + data_len]
    if version < 2:
        cookie_at = 0  # version 1 has no cookie, and no field for one
    if cookie_at >= data_len:
        raise HypervisorError(f"{where} has its cookie beyond its header ({cookie_at})")
    xml_part = data[:cookie_at] if cookie_at else data
    xml_end = xml_part.find(b"\0")
    if xml_end <= 0:
        raise HypervisorError(f"{where} holds no domain XML")
    cookie = b""
    if cookie_at:
        cookie_part = data[cookie_at:]
        end = cookie_part.find(b"\0")
        cookie = cookie_part if end < 0 else cookie_part[:end]
    try:
        xml = xml_part[:xml_end].decode()
    except UnicodeDecodeError as exc:
        raise HypervisorError(f"{where} holds domain XML that is not UTF-8") from exc
    return SaveHeader(version, data_len, running, fmt, cookie_at, xml, cookie)


def read_region(path: Path) -> bytes:
    """The header and data region of ``path`` (read only up to the stream)."""
    try:
        with path.open("rb") as f:
            head = f.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE:
                raise HypervisorError(f"{path} is not a libvirt save image: it is too short")
            data_len = _HEADER.unpack_from(head)[2]
            if head[:16] != MAGIC or not 0 < data_len <= MAX_DATA_LEN:
                # parse_region names what is wrong (magic first, then the length).
                parse_region(head, where=str(path))
            region = head + f.read(data_len)
    except OSError as exc:
        raise HypervisorError(f"cannot read the save file {path}: {exc}") from exc
    parse_region(region, where=str(path))
    return region


def rewrite_region(region: bytes, xml: str) -> bytes:
    """``region`` with its domain XML replaced by ``xml``, the same length.

    As libvirt does it: the cookie follows the new XML and ``cookieOffset``
    moves with it; the rest of the region is zeros. ``HypervisorError`` when
    the XML and the cookie do not fit the region (libvirt pads 64 KiB)."""
    old = parse_region(region)
    body = xml.encode() + b"\0"
    if b"\0" in body[:-1]:
        raise HypervisorError("domain XML for a save image may not contain NUL bytes")
    cookie_at = 0
    if old.version >= 2 and old.cookie_offset:
        cookie_at = len(body)
        body += old.cookie + b"\0"
    if len(body) > old.data_len:
        raise HypervisorError(
            f"the new domain XML ({len(xml)} bytes) does not fit the save image's header "
            f"({old.data_len} bytes with the cookie)"
        )
    fields = list(_HEADER.unpack_from(region))
    fields[5] = cookie_at
    out = _HEADER.pack(*fields) + body + b"\0" * (old.data_len - len(body))
    assert len(out) == old.region_size
    return out


def _write_at_start(fd: int, data: bytes) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


@contextlib.contextmanager
def swapped_header(path: Path, original: bytes, replacement: bytes) -> Iterator[None]:
    """Hold ``path`` with ``replacement`` as its header region, then put ``original`` back.

    Under an exclusive lock on the file for the whole time, so concurrent
    restores of one template take turns (libvirt reads the header when a
    restore begins; the stream behind it is never written). The file must
    start with ``original`` (else ``HypervisorError``, nothing written), or
    with another region of the same size left by a process that died inside
    this block: every holder writes its own replacement and restores
    ``original``, so the template's stream is valid whatever was left there.
    """
    if len(original) != len(replacement):
        raise HypervisorError("a rewritten save header must keep its size")
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise HypervisorError(f"cannot open the save file {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        current = os.pread(fd, len(original), 0)
        now = parse_region(current, where=str(path))
        if now.data_len != parse_region(original).data_len:
            raise HypervisorError(f"{path} does not match its recorded header")
        try:
            _write_at_start(fd, replacement)
            yield
        finally:
            _write_at_start(fd, original)
    except OSError as exc:
        raise HypervisorError(f"cannot rewrite the header of {path}: {exc}") from exc
    finally:
        os.close(fd)  # also releases the lock


@dataclass(frozen=True)
class SavedState:
    """A saved shadow to restore: the state file, its original header region
    (kept apart, so the file's header can always be put back), and the disk
    chain under each restored shadow's overlay (the frozen overlay first)."""

    state_file: Path
    header: bytes
    root_chain: tuple[tuple[Path, str], ...]


def root_chain(frozen: Path, below: Sequence[tuple[Path, str]]) -> tuple[tuple[Path, str], ...]:
    """The chain under a restored shadow's overlay: the frozen overlay, then what it sat on."""
    return ((frozen, "qcow2"), *below)


__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SaveHeader",
    "SavedState",
    "parse_region",
    "read_region",
    "rewrite_region",
    "root_chain",
    "swapped_header",
]
