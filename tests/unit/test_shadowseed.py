"""The seed of a target-OS shadow: what cloud-init reads from it, and the script it runs."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pycdlib
import pytest
import yaml

from vmshadow.domain.shadow import AGENT_CHANNEL, SCRATCH_SERIAL, TOOLS_SERIAL
from vmshadow.image import shadowseed
from vmshadow.image.shadowseed import (
    CONSOLE_PREFIX,
    MASKED_UNITS,
    MOUNT_POINT,
    shadow_network_config,
    shadow_user_data,
    start_agent_script,
    write_shadow_seed,
)
from vmshadow.shadow.targetos import console_reason


def _files(path: Path) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().rstrip()
        out = {}
        for name in ("meta-data", "user-data", "network-config"):
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=f"/{name}")
            out[name] = buf.getvalue()
    finally:
        iso.close()
    return label, out


def test_the_seed_is_a_cidata_iso_with_all_three_files(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    write_shadow_seed(seed, "abc123")
    label, files = _files(seed)
    assert label == "cidata"
    meta = yaml.safe_load(files["meta-data"])
    # A new instance per shadow: cloud-init treats each boot as a first boot.
    assert meta == {"instance-id": "vmshadow-abc123", "local-hostname": "vmshadow-shadow"}
    assert files["user-data"].decode() == shadow_user_data()
    assert files["network-config"].decode() == shadow_network_config()
    assert seed.stat().st_mode & 0o777 == 0o600  # the shadow's own file: libvirt hands it over


def test_networking_is_disabled_as_every_cloud_init_version_reads_it() -> None:
    config = yaml.safe_load(shadow_network_config())
    # 22.4 (Debian 12) reads the top level, later versions under "network".
    assert config["config"] == "disabled"
    assert config["network"] == {"config": "disabled"}


def test_user_data_runs_bootcmd_alone_and_sets_the_locale() -> None:
    text = shadow_user_data()
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert config["locale"] == "C.UTF-8"  # Debian's locale step fails without it
    assert config["cloud_init_modules"] == ["bootcmd"]
    assert config["cloud_config_modules"] == [] and config["cloud_final_modules"] == []
    assert config["bootcmd"] == [start_agent_script()]
    assert "users" not in config and "ssh_authorized_keys" not in config


def test_the_script_starts_the_agent_from_the_tools_disk_with_the_guests_python() -> None:
    script = start_agent_script()
    assert f"--port-name {AGENT_CHANNEL}" in script
    assert "python3 -m vmshadow.agent.guest" in script
    assert f"--setenv=PYTHONPATH={MOUNT_POINT}/agent" in script
    # stress-ng and fio come first on PATH from the tools disk's wrappers.
    assert f"--setenv=PATH={MOUNT_POINT}/bin:" in script
    # Disks are found by their serial, never by the name the guest gave them.
    assert f"disk_with_serial {TOOLS_SERIAL}" in script
    assert f"disk_with_serial {SCRATCH_SERIAL}" in script
    assert f'mount -t iso9660 -o ro "$tools" {MOUNT_POINT}' in script


def test_systemd_never_sees_a_dollar_in_the_agents_command_line() -> None:
    """systemd expands $NAME in a unit's command line itself: once the script's
    shell has put the scratch disk in, nothing is left for it to expand."""
    script = start_agent_script()
    command = re.search(r'/bin/sh -c "(.*?)" \\', script, re.S)
    assert command is not None
    assert command.group(1).replace("$scratch", "/dev/vdb").count("$") == 0


def test_units_a_shadow_never_needs_are_masked_at_run_time_only() -> None:
    script = start_agent_script()
    for unit in ("ssh.service", "cron.service", "apt-daily.timer", "getty.target"):
        assert unit in MASKED_UNITS
    assert "systemctl mask --runtime --now --no-block $units" in script
    # cloud-init's network stage is masked only from its local stage, never from
    # inside itself (--now would stop the script that runs this).
    assert "cloud-init.service" not in MASKED_UNITS
    assert 'cloud-init-local.service)" = activating' in script


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            f"{CONSOLE_PREFIX} the guest has no python3 for the agent; powering off",
            "the guest has no python3 for the agent",
        ),
        (f"[  3.1] cloud-init[235]: {CONSOLE_PREFIX} no tools disk; powering off", "no tools disk"),
        (f"{CONSOLE_PREFIX} agent started from /dev/vdd, scratch /dev/vdb", None),
        ("Debian GNU/Linux 12 login:", None),
    ],
)
def test_the_console_says_why_the_agent_did_not_start(line: str, reason: str | None) -> None:
    assert console_reason(f"boot\n{line}\n") == reason


@pytest.mark.subprocess
def test_the_script_is_valid_posix_sh(tmp_path: Path) -> None:
    script = tmp_path / "start.sh"
    script.write_text(start_agent_script())
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_every_placeholder_is_filled() -> None:
    assert re.search(r"\{[a-z_]+\}", start_agent_script()) is None
    assert shadowseed.MIN_PYTHON <= (3, 11)  # the Debian 12 guest's own python3 qualifies
