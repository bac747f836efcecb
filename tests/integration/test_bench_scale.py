"""The control-plane scale bench at its smallest: a real service process on
libvirt's test driver drives a handful of concurrent transitions to
``completed`` over HTTP, under ``vmshadow serve``'s supervisor (API workers
and a controller as processes), the clients following the SSE stream. Keeps
``bench/scale.py`` working; its figures are not asserted (speed targets live
in bench/, not in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]


def test_scale_bench_drives_transitions_to_completed(tmp_path: Path) -> None:
    image = tmp_path / "user-image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    row = scale.run_level(5, tmp_path, image, follow=True)
    assert row["first_errors"] == [] and row["completed"] == 5, row
    assert row["clients"] == "sse" and row["database"] == "sqlite"
    assert row["api_requests"] >= 5 * 4  # create, a stream per state waited for, confirm
    assert row["api_p99_ms"] > 0 and row["transitions_per_s"] > 0


def test_the_ceiling_polls_a_do_nothing_api_in_its_own_process(tmp_path: Path) -> None:
    import scale_clients

    row = scale_clients.ceiling_level(3, tmp_path, duration_s=2.0)
    assert row["errors"] == 0, (tmp_path / "ceiling-3.log").read_text()
    # Three users, once a second for two seconds: each polled at least twice.
    assert row["api_requests"] >= 6 and row["api_p99_ms"] > 0
    assert 0 < row["client_cpu_share"] < 2
