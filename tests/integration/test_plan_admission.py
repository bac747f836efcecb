"""Shadow admission across processes: the host's own count of shadow domains
plus live reservations, under a host-wide lock, on libvirt's test driver."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vmshadow.domain.errors import ConflictError
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.shadow.admission import Admission

pytestmark = [pytest.mark.libvirt]


def test_a_reservation_takes_the_slot_until_released(tmp_path: Path) -> None:
    with LibvirtHypervisor("test:///default") as hv:
        assert hv.list_shadows() == []
        one = Admission(hv, 1, tmp_path)
        other = Admission(hv, 1, tmp_path)  # another process: same host, same folder
        got = one.try_reserve()
        assert got is not None and other.try_reserve() is None
        told: list[int] = []
        with pytest.raises(ConflictError, match="max_shadows is 1"):
            other.wait(wait_s=0.2, on_wait=told.append, poll_s=0.05)
        assert told == [1]
        got.release()
        again = other.wait(wait_s=1.0, poll_s=0.05)
        assert again.path is not None
        again.release()


def test_a_dead_process_reservation_does_not_count(tmp_path: Path) -> None:
    with LibvirtHypervisor("test:///default") as hv:
        adm = Admission(hv, 1, tmp_path)
        got = adm.try_reserve()
        assert got is not None and got.path is not None
        # The same file as a process that is gone (pid 2**22 + 1 is beyond pid_max) wrote it.
        got.path.write_text(f"{2**22 + 1} {time.time()}")
        assert adm.in_use() == 0
        assert adm.try_reserve() is not None
        assert os.getpid() > 0
