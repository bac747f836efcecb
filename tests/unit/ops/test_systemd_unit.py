"""The systemd unit ./scripts/setup installs: systemd reads it without a
complaint, and its hardening leaves vmshadow its own folder and libvirt."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from vmshadow.config import load_settings

ROOT = Path(__file__).parents[3]
UNIT = ROOT / "deploy" / "systemd" / "vmshadow.service"


def rendered(tmp_path: Path) -> Path:
    out = tmp_path / "vmshadow.service"
    out.write_text(UNIT.read_text().replace("@PREFIX@", str(ROOT)))
    return out


def sections(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze needed")
def test_systemd_reads_it_without_a_warning(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "vmshadow").exists():
        pytest.skip("the checkout's .venv is not built")
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(rendered(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # A value systemd cannot parse is only a warning (exit 0): any output fails.
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )


def test_the_hardening_leaves_the_data_folder_writable(tmp_path: Path) -> None:
    svc = sections(rendered(tmp_path))["Service"]
    assert svc["ProtectSystem"] == "strict" and svc["PrivateTmp"] == "yes"
    assert svc["NoNewPrivileges"] == "yes"
    assert "AF_UNIX" in svc["RestrictAddressFamilies"]  # libvirt's socket
    # What the service writes when run as root with the defaults: its data folder.
    data_dir = load_settings(config_path=tmp_path / "none.toml", environ={}).data_dir
    if data_dir.is_relative_to("/root") or data_dir.is_relative_to("/home"):
        pytest.skip(f"not root: the default data folder is {data_dir}")
    assert str(data_dir) in svc["ReadWritePaths"].split()
    assert svc["ExecStart"] == f"{ROOT}/.venv/bin/vmshadow serve"
    assert int(svc["TimeoutStopSec"]) > 60  # uvicorn's graceful shutdown
