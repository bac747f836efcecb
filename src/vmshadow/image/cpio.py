"""A writer for the cpio "newc" format the Linux kernel unpacks as initramfs.

Written here rather than calling cpio(1) so the initramfs is built from an
in-memory list of entries, with no temporary tree and no root needed to set
ownership: every entry is owned by uid 0.
"""

from __future__ import annotations

from typing import Protocol


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


_TRAILER = "TRAILER!!!"


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _header(ino: int, mode: int, size: int, name: str) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
    return b"070701" + "".join(f"{f:08x}" for f in fields).encode()


def write_newc_archive(out: _Writable, entries: list[tuple[str, int, bytes | None]]) -> None:
    """Write (path, mode, data) entries; data is None for directories."""
    ino = 1
    for name, mode, data in [*entries, (_TRAILER, 0, None)]:
        body = data or b""
        head = _header(ino if name != _TRAILER else 0, mode, len(body), name)
        head += name.encode() + b"\0"
        out.write(head + _pad(len(head)))
        out.write(body + _pad(len(body)))
        ino += 1
