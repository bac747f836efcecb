"""Copy host binaries and exactly the shared libraries they link into the guest root.

The guest runs the very binaries Debian installed on the host (stress-ng,
fio, python3), so their library closure comes from ``ldd`` rather than from
resolving package dependencies by hand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

from vmshadow.domain.errors import ImageError

# Parts of the standard library the agent never imports; dropping them keeps
# the base image small (the whole stdlib is over 50 MB).
_STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "unittest",
    "venv",
    "sqlite3",
    "curses",
    "dbm",
    "xmlrpc",
    "wsgiref",
    "http",
    "email",
    "urllib",
    "html",
    "asyncio",
    "multiprocessing",
    "config-3.11-x86_64-linux-gnu",
}
_DYNLOAD_SKIP = re.compile(
    r"^(_tkinter|_sqlite3|_curses|_dbm|_gdbm|_ssl|_hashlib|_ctypes_test|"
    r"_test|xxlimited|_xxtest|readline)"
)
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


# dpkg rewrites its status file at every install, upgrade and removal.
DPKG_STATUS = Path("/var/lib/dpkg/status")
_versions: dict[str, tuple[tuple[int, int, int], str]] = {}
_versions_lock = threading.Lock()


def package_version(name: str) -> str:
    """The installed version of a Debian package, asked of dpkg once per dpkg state:
    every shadow of a user's image names its tools disk by these versions, and
    three ``dpkg-query`` runs were 4 % of the controller's CPU at 100 transitions."""
    try:
        st = DPKG_STATUS.stat()
        state = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return _ask_dpkg(name)
    with _versions_lock:
        known = _versions.get(name)
    if known is not None and known[0] == state:
        return known[1]
    version = _ask_dpkg(name)
    with _versions_lock:
        _versions[name] = (state, version)
    return version


def _ask_dpkg(name: str) -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout:
        raise ImageError(f"Debian package {name} is not installed: run the README set-up command")
    return proc.stdout


def trimmed_stdlib(source: Path, dest: Path) -> list[Path]:
    """Copy the stdlib minus what the agent never needs; return its extension modules."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in _STDLIB_SKIP or n.endswith((".pyc", ".exe"))}
        if folder.endswith("lib-dynload"):
            skipped |= {n for n in names if _DYNLOAD_SKIP.match(n)}
        return skipped

    shutil.copytree(source, dest, ignore=ignore, symlinks=True)
    return sorted((dest / "lib-dynload").glob("*.so")) if (dest / "lib-dynload").is_dir() else []


def _libraries(binary: Path) -> set[Path]:
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"ldd {binary} failed: {proc.stderr.strip()}")
    libs = set()
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise ImageError(f"{binary} needs a library the host lacks: {line.strip()}")
        match = _LDD_LINE.search(line)
        if match:
            libs.add(Path(match.group(1)))
    return libs


def _copy_preserving(path: Path, root: Path) -> None:
    """Copy a file's content to the same path under root (symlinks followed)."""
    dest = root / path.relative_to("/")
    if dest.exists() or dest.is_symlink():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, dest)


def copy_with_libraries(binaries: Iterable[Path], root: Path) -> None:
    """Copy each binary (unless already under root) and its whole library closure."""
    needed: set[Path] = set()
    for binary in binaries:
        if not str(binary).startswith(str(root)):
            _copy_preserving(binary, root)
        needed |= _libraries(binary)
    for lib in sorted(needed):
        _copy_preserving(lib, root)
