"""The tools disk: its layout read back as the guest's kernel sees it (Rock Ridge),
its cache by inputs, and (with the host's real tools) that its wrappers run."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path

import pycdlib
import pytest

from vmshadow.image import toolsdisk
from vmshadow.image.toolsdisk import (
    EXEC_MODE,
    FILE_MODE,
    LOADER,
    DiskFile,
    agent_files,
    disk_files,
    ensure_tools_disk,
    tools_inputs,
    write_tools_iso,
)


def _read(path: Path) -> tuple[str, dict[str, tuple[int, bytes]]]:
    """Volume label, and every file by its Rock Ridge path: (mode, bytes)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().rstrip()
        files = {}
        for folder, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                where = f"{folder.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=where)
                mode = iso.get_record(rr_path=where).rock_ridge.get_file_mode()
                files[where.lstrip("/")] = (mode, buf.getvalue())
    finally:
        iso.close()
    return label, files


def _fake_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """copy_with_libraries as on the host, without ldd: two tools and three libraries."""

    def fake_copy(binaries: list[Path], root: Path) -> None:
        for b in binaries:
            dest = root / str(b).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"\x7fELF " + b.name.encode())
        for lib in (
            "lib64/ld-linux-x86-64.so.2",
            "lib/x86_64-linux-gnu/libc.so.6",
            "usr/lib/x86_64-linux-gnu/ceph/libceph-common.so.2",
        ):
            dest = root / lib
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"\x7fELF lib")

    monkeypatch.setattr(toolsdisk, "copy_with_libraries", fake_copy)


def test_the_iso_keeps_long_names_modes_and_folders(tmp_path: Path) -> None:
    iso = tmp_path / "tools.iso"
    write_tools_iso(
        iso,
        {
            "bin/stress-ng": DiskFile(EXEC_MODE, data=b"#!/bin/sh\n"),
            "agent/vmshadow/agent/__pycache__/guest.cpython-311.pyc": DiskFile(
                FILE_MODE, data=b"pyc"
            ),
            "lib/ld-linux-x86-64.so.2": DiskFile(EXEC_MODE, data=b"elf"),
        },
    )
    label, files = _read(iso)
    assert label == "VMSTOOLS"
    assert files["bin/stress-ng"] == (EXEC_MODE, b"#!/bin/sh\n")
    assert files["agent/vmshadow/agent/__pycache__/guest.cpython-311.pyc"] == (FILE_MODE, b"pyc")
    assert stat.S_IMODE(files["lib/ld-linux-x86-64.so.2"][0]) == 0o555


def test_the_layout_wraps_each_tool_around_the_bundled_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_host(monkeypatch)
    files = disk_files(tmp_path / "tree")
    assert files["libexec/stress-ng"].mode == EXEC_MODE
    assert files["libexec/fio"].mode == EXEC_MODE
    # One flat folder of libraries, whatever their folder on the host.
    assert {"lib/libc.so.6", "lib/libceph-common.so.2", f"lib/{LOADER}"} <= set(files)
    assert files[f"lib/{LOADER}"].mode == EXEC_MODE
    assert files["lib/libc.so.6"].mode == FILE_MODE
    wrapper = (files["bin/fio"].data or b"").decode()
    assert wrapper.startswith("#!/bin/sh\n")
    assert f'"$top/lib/{LOADER}" --library-path "$top/lib" "$top/libexec/fio" "$@"' in wrapper


def test_the_agent_is_the_built_in_images_with_bytecode(tmp_path: Path) -> None:
    files = agent_files(tmp_path / "agent")
    names = set(files)
    assert "agent/vmshadow/__init__.py" in names
    assert "agent/vmshadow/agent/guest.py" in names
    assert not any("/host/" in n for n in names)  # the host side never enters a guest
    pyc = [n for n in names if n.endswith(".pyc")]
    assert any(n.startswith("agent/vmshadow/agent/__pycache__/guest.") for n in pyc)
    # Unchecked hashes: flags 0b01 in the header (PEP 552).
    data = (tmp_path / "agent" / pyc[0].removeprefix("agent/")).read_bytes()
    assert int.from_bytes(data[4:8], "little") == 0b01


def test_built_once_then_reused_and_readable_by_qemu_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_host(monkeypatch)
    monkeypatch.setattr(toolsdisk, "package_version", lambda name: f"{name}-1.0")
    iso = ensure_tools_disk(tmp_path)
    digest, _inputs = tools_inputs()
    assert iso == tmp_path / "tools" / digest / "tools.iso"
    assert (iso.parent / "manifest.json").is_file()
    first = iso.stat()
    assert ensure_tools_disk(tmp_path) == iso
    assert iso.stat().st_ino == first.st_ino  # not rebuilt
    if os.geteuid() == 0:
        # Root's and read-only (hypervisor.filemodes): every shadow shares it.
        assert first.st_uid == 0
        assert stat.S_IMODE(first.st_mode) in (0o440, 0o444)
        assert stat.S_IMODE(iso.parent.stat().st_mode) in (0o750, 0o755)
    assert not [p for p in (tmp_path / "tools").iterdir() if p.name.startswith(".")]


def test_new_tool_versions_make_a_new_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolsdisk, "package_version", lambda name: "1")
    before, _ = tools_inputs()
    monkeypatch.setattr(toolsdisk, "package_version", lambda name: "2" if name == "fio" else "1")
    after, inputs = tools_inputs()
    assert before != after
    assert inputs["packages"] == {"stress-ng": "1", "fio": "2", "libc6": "1"}


@pytest.mark.subprocess
def test_the_wrappers_run_the_hosts_tools_from_the_disk(tmp_path: Path) -> None:
    """The real layout from this host's stress-ng and fio, extracted as the
    guest would mount it: each wrapper runs its tool through the bundled loader."""
    files = disk_files(tmp_path / "tree")
    iso = tmp_path / "tools.iso"
    write_tools_iso(iso, files)
    _label, read = _read(iso)
    root = tmp_path / "mounted"
    for where, (mode, data) in read.items():
        dest = root / where
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        dest.chmod(stat.S_IMODE(mode))
    env = {"PATH": "/nonexistent"}  # only the absolute wrapper path, as the agent runs it
    for tool, expect in (("stress-ng", "stress-ng"), ("fio", "fio-")):
        out = subprocess.run(
            [str(root / "bin" / tool), "--version"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert expect in out.stdout
