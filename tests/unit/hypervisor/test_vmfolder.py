"""A VM's folder (``hypervisor.vmfolder``) when several controllers make their first VMs at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from vmshadow.domain.errors import HypervisorError
from vmshadow.hypervisor.vmfolder import claim_vm_dir


def test_the_vms_folder_made_by_another_controller_meanwhile_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vms = tmp_path / "vms"
    real_exists = Path.exists

    def made_meanwhile(self: Path) -> bool:
        # Between our check and our mkdir, another controller makes the folder.
        if self == vms:
            vms.mkdir(exist_ok=True)
            return False
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", made_meanwhile)
    assert claim_vm_dir(vms / "web1", "t1") is True
    assert claim_vm_dir(vms / "web1", "t1") is False  # the same transition's, again


def test_eight_controllers_at_once_each_get_their_own_folder(tmp_path: Path) -> None:
    vms = tmp_path / "vms"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        barrier.wait()
        try:
            assert claim_vm_dir(vms / f"vm{i}", f"t{i}") is True
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pytest.raises(HypervisorError, match="not made for transition t9"):
        claim_vm_dir(vms / "vm0", "t9")
