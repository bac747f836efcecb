"""A vm stressor that never got its memory fails the phase (stress-ng itself exits 0)."""

from __future__ import annotations

from pathlib import Path

from vmshadow.agent.phaserun import _memory_not_held, oom_kills
from vmshadow.agent.phasespec import StressNgParams

VM900 = StressNgParams("vm", 1, vm_bytes_mib=900, vm_keep=True)


def test_what_a_512_mib_guest_reported_for_900_mib_is_out_of_memory() -> None:
    # The figures stress-ng 0.15 gave in a 512 MiB shadow (exit 0).
    seen = {"stressor": "vm", "bogo_ops": 0, "max_rss_kib": 2840}
    code, message = _memory_not_held(VM900, seen) or ("", "")
    assert code == "out_of_memory"
    assert "held at most 3 MiB of the 900 MiB" in message


def test_a_vm_worker_that_held_its_memory_passes() -> None:
    assert _memory_not_held(VM900, {"max_rss_kib": 900 * 1024}) is None
    assert _memory_not_held(VM900, {"max_rss_kib": None}) is None  # brief fallback: no RSS
    cpu = StressNgParams("cpu", 1, cpu_load=50)
    assert _memory_not_held(cpu, {"max_rss_kib": 10}) is None


def test_oom_kill_counter(tmp_path: Path) -> None:
    p = tmp_path / "vmstat"
    p.write_text("pgfault 10\noom_kill 7\n")
    assert oom_kills(str(p)) == 7
    p.write_text("pgfault 10\n")
    assert oom_kills(str(p)) is None
    assert oom_kills(str(p) + ".missing") is None
