"""A launch with an expected load through the whole loop on real QEMU: its
prediction says how sure it is and which engine would correct it with more
history, the VM gets the recommended IOPS burst, and the completed launch's
history record keeps the uncorrected extrapolation that the learned
correction trains on (``predict.correction``; its training on 20+ such
records is ``tests/integration/test_learned_correction.py``)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from service_helpers import cached_accelerator, service

from vmshadow.config import Settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.store.db import make_engine
from vmshadow.store.repository import Store

pytestmark = [pytest.mark.e2e, pytest.mark.libvirt, pytest.mark.subprocess]


@pytest.fixture
def vm_name(hv: LibvirtHypervisor) -> Iterator[str]:
    name = f"e2e-ld-{uuid.uuid4().hex[:6]}"
    yield name
    if hv.state(name) is not None:
        hv.remove_full_vm(name)


def test_a_loaded_launch_closes_the_loop(
    settings: Settings, hv: LibvirtHypervisor, vm_name: str
) -> None:
    accel = cached_accelerator(settings).value
    with service(
        settings, VMSHADOW_ACCELERATOR=accel, VMSHADOW_REFINE_ROUNDS="0", VMSHADOW_OBSERVE_S="3"
    ) as run:
        r = run.call(
            "POST",
            "/transitions",
            json={
                "vm_name": vm_name,
                "profile": "oltp",
                "load": 20,
                "policy": "fast",
                "requested": {"vcpus": 2, "memory_mib": 1024},
            },
        )
        assert r.status_code == 201, r.text
        tid = str(r.json()["id"])
        t = run.wait_state(tid, "running", "completed", timeout=240)
        pred = t["prediction"]
        assert pred["method"] == "ramp-extrapolation"
        assert "learned correction" in pred["label"]  # why it did not answer
        conf = pred["confidence"]
        assert 0 <= conf["risk"] <= 4 and conf["drivers"] and conf["history_count"] == 0
        assert set(conf["intervals"]) == {"vcpus", "memory_mib", "iops"}
        bucket = pred["iops_bucket"]
        assert bucket["burst"] >= bucket["rate"] == t["final"]["iops"] > 0
        # QEMU took all three figures: the VM's live XML says so.
        live = hv.domain_xml(vm_name)
        tune = ET.fromstring(live).find("devices/disk/iotune")
        assert tune is not None, live
        assert tune.findtext("total_iops_sec") == str(bucket["rate"])
        assert tune.findtext("total_iops_sec_max") == str(bucket["burst"])
        assert tune.findtext("total_iops_sec_max_length") == str(bucket["burst_s"])
        run.wait_state(tid, "completed", timeout=120)
        store = Store(make_engine(f"sqlite:///{run.data_dir / 'vmshadow.db'}"))
        (row,) = [h for h in store.history() if h.transition_id == tid]
        assert row.shadow["engine"] == "ramp-extrapolation"
        assert row.shadow["extrapolated"]["vcpus"] > 0 and row.load == 20
