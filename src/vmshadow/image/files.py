"""A built shadow image's files, and the check that its shared base is intact."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ImageError


@dataclass(frozen=True)
class ImageFiles:
    """Paths of a built image; ``manifest`` records what went into it."""

    directory: Path
    kernel: Path
    initrd: Path
    base: Path
    manifest: dict[str, object]

    @classmethod
    def at(cls, directory: Path) -> ImageFiles:
        manifest_path = directory / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        return cls(
            directory=directory,
            kernel=directory / "vmlinuz",
            initrd=directory / "initrd.img",
            base=directory / "base.qcow2",
            manifest=manifest,
        )

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.kernel, self.initrd, self.base)) and bool(
            self.manifest
        )

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.kernel, self.initrd, self.base))

    def verify_base(self) -> None:
        """Refuse a base whose bytes differ from the build's; keep it root's and read-only.

        Every shadow boots this file, so a QEMU process that could write it
        would reach every later shadow (and the built-in full VMs). Domains
        name it with ``relabel='no'``, so libvirt no longer hands it to QEMU's
        user; a base left that way by an older vmshadow is given back here,
        once its hash is confirmed. The hash (0.05 s for the 54 MB base here, warm cache)
        is re-read only when the file's identity or times change: its ctime
        moves on any write or chmod, and no one but root can set it back.
        """
        expected = self.manifest.get("base_sha256")
        if not isinstance(expected, str):
            raise ImageError(
                f"{self.directory} records no hash of its base: rebuild it with "
                "`vmshadow image build --force`"
            )
        try:
            st = self.base.stat()
        except OSError as exc:
            raise ImageError(f"cannot read the base image {self.base}: {exc}") from exc
        mine = os.geteuid()
        if st.st_uid != mine or st.st_mode & 0o222:
            _verified.pop(self.base, None)
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if _verified.get(self.base) == key:
            return
        if sha256_of(self.base) != expected:
            raise ImageError(
                f"the base image {self.base} changed since it was built: rebuild it with "
                "`vmshadow image build --force`"
            )
        if st.st_uid != mine or st.st_mode & 0o222:
            if mine == 0:
                os.chown(self.base, 0, 0)
            self.base.chmod(0o444)
            st = self.base.stat()
        _verified[self.base] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


# base path -> (inode, size, mtime, ctime) when its hash last matched.
_verified: dict[Path, tuple[int, int, int, int]] = {}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
