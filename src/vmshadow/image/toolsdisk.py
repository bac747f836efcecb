"""The tools disk: what a shadow of the target's own OS needs but the OS lacks.

A store image has its own kernel, init system and (we hope) python3, but no
vmshadow agent, stress-ng or fio, and no network to install them with. This
read-only ISO 9660 disk carries them:

- ``agent/vmshadow/agent/*.py``: the very agent modules the built-in image
  installs (``image.builder._agent_sources``), byte-compiled for the host's
  Python with unchecked hashes (a guest with the same Python skips compiling,
  seconds under TCG; any other Python compiles the sources in memory);
- ``libexec/stress-ng``, ``libexec/fio``: the host's binaries, and ``lib/``
  every shared library they link, the dynamic loader included;
- ``bin/stress-ng``, ``bin/fio``: wrappers that run them through the bundled
  loader with ``--library-path``, so they run on any x86_64 guest whatever
  its own C library (the agent finds them on ``PATH``).

Rock Ridge keeps exec bits and long names; the plain ISO 9660 names are
generated. The disk is built once per set of inputs (tool and C library
versions, agent sources) and kept as ``<data_dir>/tools/<digest>/tools.iso``,
root's and readable by QEMU's group (``hypervisor.filemodes``); every shadow
attaches the same file read-only, with ``relabel='no'``.
"""

from __future__ import annotations

import compileall
import hashlib
import io
import json
import py_compile
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pycdlib

from vmshadow.domain.errors import ImageError
from vmshadow.domain.shadow import TOOLS_LABEL
from vmshadow.hypervisor.filemodes import private_dir, qemu_readable
from vmshadow.image.builder import GUEST_TOOLS, _agent_sources
from vmshadow.image.hostfiles import copy_with_libraries, package_version

# Bump when the layout of the disk changes in a way the inputs do not show.
TOOLS_VERSION = "1"
ISO_NAME = "tools.iso"
LOADER = "ld-linux-x86-64.so.2"
# The C library and the loader come from libc6: a new one is a new disk.
HOST_PACKAGES = ("stress-ng", "fio", "libc6")
EXEC_MODE = 0o100555
FILE_MODE = 0o100444
DIR_MODE = 0o040555

# ``$0`` is the wrapper's own path (the agent runs it by its absolute path
# from PATH); the tool itself is started by the loader, so the guest's own
# loader and libraries, whatever they are, play no part.
WRAPPER = """#!/bin/sh
# vmshadow tools disk: {tool} with the libraries it was built against.
top="${{0%/*}}/.."
exec "$top/lib/{loader}" --library-path "$top/lib" "$top/libexec/{tool}" "$@"
"""


@dataclass(frozen=True)
class DiskFile:
    """One file of the disk: its bytes or the host file to read them from."""

    mode: int
    data: bytes | None = None
    source: Path | None = None


def tools_inputs() -> tuple[str, dict[str, object]]:
    """The digest naming the disk, and the inputs behind it (for its manifest)."""
    inputs: dict[str, object] = {
        "version": TOOLS_VERSION,
        "packages": {name: package_version(name) for name in HOST_PACKAGES},
        "tools": list(GUEST_TOOLS),
        "wrapper": WRAPPER,
        # The bytecode on the disk is for this Python.
        "python": list(sys.version_info[:2]),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
    sources = _agent_sources()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name])
    return digest.hexdigest()[:16], inputs


def tools_dir(data_dir: Path) -> Path:
    return data_dir / "tools"


def ensure_tools_disk(data_dir: Path, *, log: Callable[[str], None] | None = None) -> Path:
    """The tools disk for the current inputs, built first if it is not there yet."""
    say = log or (lambda _msg: None)
    digest, inputs = tools_inputs()
    root = tools_dir(data_dir)
    target = root / digest
    iso = target / ISO_NAME
    if iso.is_file():
        return iso
    root.mkdir(parents=True, exist_ok=True)
    # QEMU (libvirt-qemu) must pass through on its way to the disk.
    root.chmod(0o755)
    started = time.monotonic()
    say("building the tools disk (agent, stress-ng, fio)")
    with tempfile.TemporaryDirectory(prefix=".build-", dir=root) as tmp:
        work = Path(tmp)
        out = work / "out"
        out.mkdir()
        write_tools_iso(out / ISO_NAME, disk_files(work / "tree"))
        manifest = {
            "digest": digest,
            "inputs": inputs,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        qemu_readable(out / ISO_NAME)
        private_dir(out)
        try:
            # A rename is atomic: a shadow sees no disk or a whole one.
            out.rename(target)
        except OSError:
            if not iso.is_file():  # another process built it meanwhile: use theirs
                raise
    say(f"tools disk {digest} built in {time.monotonic() - started:.1f} s")
    return iso


def disk_files(tree: Path) -> dict[str, DiskFile]:
    """Every file of the disk by its path on the disk, gathered from the host."""
    files: dict[str, DiskFile] = {}
    files.update(agent_files(tree / "agent"))
    host = tree / "host"
    copy_with_libraries([Path(t) for t in GUEST_TOOLS], host)
    tools = {(host / t.lstrip("/")).resolve() for t in GUEST_TOOLS}
    for path in sorted(p for p in host.rglob("*") if p.is_file()):
        if path.resolve() in tools:
            files[f"libexec/{path.name}"] = DiskFile(EXEC_MODE, source=path)
            continue
        # One flat folder for --library-path; the loader itself must be executable.
        where = f"lib/{path.name}"
        if where in files:
            raise ImageError(f"two host libraries are both named {path.name}")
        files[where] = DiskFile(EXEC_MODE if path.name == LOADER else FILE_MODE, source=path)
    if f"lib/{LOADER}" not in files:
        raise ImageError(f"the host tools do not link {LOADER}: not an x86_64 glibc host")
    for tool in GUEST_TOOLS:
        name = Path(tool).name
        text = WRAPPER.format(tool=name, loader=LOADER)
        files[f"bin/{name}"] = DiskFile(EXEC_MODE, data=text.encode())
    return files


def agent_files(folder: Path) -> dict[str, DiskFile]:
    """The agent package as the built-in image installs it, with its bytecode."""
    package = folder / "vmshadow"
    (package / "agent").mkdir(parents=True)
    (package / "__init__.py").write_bytes(b"")
    for name, data in _agent_sources().items():
        (package / "agent" / name).write_bytes(data)
    # Unchecked hashes: the disk's timestamps say nothing about the sources.
    ok = compileall.compile_dir(
        str(package),
        quiet=1,
        ddir="/vmshadow",
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise ImageError("the agent's sources do not compile")
    return {
        f"agent/{p.relative_to(folder).as_posix()}": DiskFile(FILE_MODE, source=p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_tools_iso(path: Path, files: Mapping[str, DiskFile]) -> None:
    """Write ``files`` (by path on the disk) as an ISO 9660 image with Rock Ridge."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=TOOLS_LABEL, rock_ridge="1.09")
    names: dict[str, str] = {"": ""}  # disk folder -> its ISO 9660 path
    counter = 0

    def iso_name(prefix: str) -> str:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}"

    def folder(where: str) -> str:
        if where in names:
            return names[where]
        parent, _, name = where.rpartition("/")
        iso_parent = folder(parent)
        iso_path = f"{iso_parent}/{iso_name('D')}"
        iso.add_directory(iso_path, rr_name=name, file_mode=DIR_MODE)
        names[where] = iso_path
        return iso_path

    try:
        for where in sorted(files):
            entry = files[where]
            parent, _, name = where.rpartition("/")
            iso_path = f"{folder(parent)}/{iso_name('F')}.;1"
            if entry.source is not None:
                iso.add_file(str(entry.source), iso_path, rr_name=name, file_mode=entry.mode)
            else:
                data = entry.data or b""
                iso.add_fp(
                    io.BytesIO(data), len(data), iso_path, rr_name=name, file_mode=entry.mode
                )
        with open(path, "wb") as out:
            iso.write_fp(out)
    finally:
        iso.close()
