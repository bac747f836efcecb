"""Faults with a real shadow under QEMU: the guest runs out of memory, libvirtd restarts
under a running shadow. Also the guest's own view of its network (only ``lo``).
(kill -9 of the controller in each state and cancel are in test_transitions_e2e.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_for
from service_helpers import cached_accelerator

from vmshadow.agent.phasespec import PhaseSpec, StressNgParams
from vmshadow.config import Settings
from vmshadow.domain.errors import AgentError
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.shadow.session import ShadowSession

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess, pytest.mark.fault]


def session(settings: Settings, hv: LibvirtHypervisor) -> ShadowSession:
    image = find_image(settings.images_dir)
    assert image is not None
    accelerator = cached_accelerator(settings, hv)
    return ShadowSession(
        hv,
        image,
        settings.runs_dir,
        accelerator=accelerator,
        hello_timeout_s=240,  # TCG on a busy 2-core host
        sample_interval_s=1.0,
    )


def assert_gone(hv: LibvirtHypervisor, s: ShadowSession) -> None:
    assert hv.state(s.name) is None
    assert not s.run_dir.exists()


def test_guest_sees_only_lo_and_running_out_of_memory_is_a_clear_error(
    settings: Settings, hv: LibvirtHypervisor
) -> None:
    with session(settings, hv) as s:
        # From inside: the agent lists /sys/class/net (the session refuses anything else).
        assert tuple(s.record.hello["net_ifaces"]) == ("lo",)
        # 900 MiB in a 512 MiB guest with no swap: the kernel refuses the mapping and
        # stress-ng quietly idles (exit 0). 460 MiB is mapped but cannot all be
        # resident: the OOM killer steps in. Both are the same clear error.
        for n, mib in enumerate((900, 460)):
            hog = PhaseSpec(
                f"hog{n}", "stress-ng", 6, StressNgParams("vm", 1, vm_bytes_mib=mib, vm_keep=True)
            )
            with pytest.raises(AgentError) as info:
                s.run_phase(hog)
            assert "[out_of_memory]" in str(info.value) and f"phase hog{n}" in str(info.value)
        # The agent survived the OOM killer and the shadow still works.
        s.run_phase(PhaseSpec("after", "idle", 2))
    assert_gone(hv, s)


# -- libvirtd restart ---------------------------------------------------------------------------
def _libvirt_up() -> bool:
    probe = subprocess.run(
        ["virsh", "-c", "qemu:///system", "version"], capture_output=True, timeout=20, check=False
    )
    return probe.returncode == 0


def _systemd() -> bool:
    return shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()


def restart_libvirtd() -> None:
    """Restart libvirtd the way scripts/setup starts it: systemd if it runs, else by hand."""
    if _systemd():
        subprocess.run(["systemctl", "restart", "libvirtd.service"], check=True)
    else:
        pid = int(Path("/run/libvirtd.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        wait_for("libvirtd to exit", lambda: not Path(f"/proc/{pid}").exists(), 60)
        subprocess.run(["libvirtd", "-d"], check=True)
    wait_for("libvirtd to come back", _libvirt_up, 60)


@pytest.fixture
def libvirtd_running_afterwards() -> Iterator[None]:
    yield
    if not _libvirt_up():  # whatever happened in the test, leave libvirtd running
        if _systemd():
            subprocess.run(["systemctl", "start", "libvirtd.service"], check=False)
        else:
            subprocess.run(["libvirtd", "-d"], check=False)
        wait_for("libvirtd to come back", _libvirt_up, 60)


def test_libvirtd_restart_while_a_shadow_runs(
    settings: Settings, hv: LibvirtHypervisor, libvirtd_running_afterwards: None
) -> None:
    with session(settings, hv) as s:
        s.run_phase(PhaseSpec("before", "idle", 2))
        restart_libvirtd()
        # The guest and its agent channel belong to QEMU, which outlives libvirtd;
        # the session's connection reconnects on its next call.
        s.run_phase(PhaseSpec("during", "idle", 3))
        assert hv.is_running(s.name)
        hosts = [p for p in s.record.series if p.source.value == "host" and p.phase_id == "during"]
        assert hosts, "host-side sampling did not resume after the restart"
    # Destroyed through the reconnected connection: nothing left for a reaper.
    assert_gone(hv, s)
    assert _libvirt_up()
