"""``usecases/vms.py`` on libvirt's test driver: list the VMs vmshadow launched
across the pool, show one, delete one (ending its transition first), and
never touch a domain vmshadow did not make."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import managed_vms as mv
import pytest
from managed_vms import S

from vmshadow.controller.service import TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import HypervisorError, NotFoundError
from vmshadow.domain.transition import TransitionKind
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store
from vmshadow.usecases.vms import delete_vm, get_vm, list_vms, ssh_command

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]  # qemu-img makes the disks


def service_for(tmp_path: Path, **hosts: str) -> TransitionService:
    settings = mv.settings(tmp_path, **hosts)
    engine = make_engine(settings.db_url)
    migrate(engine)
    return TransitionService(settings, Store(engine), pool=pool_from_settings(settings))


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[TransitionService]:
    service = service_for(tmp_path)
    yield service
    service.pool.close()


def test_list_show_delete(svc: TransitionService, hv: LibvirtHypervisor) -> None:
    store = svc.store
    tid = mv.launched(svc.settings, store, hv, "web1", state=S.COMPLETED)
    mv.launched(svc.settings, store, hv, "db1", state=S.PREDICTED, size=Allocation(1, 512))
    listing = list_vms(svc.pool, store)
    assert listing.errors == []
    by_name = {v.name: v for v in listing.items}
    # Only vmshadow's: the test driver's own domain "test" is not listed.
    assert sorted(by_name) == ["db1", "web1"]
    web = by_name["web1"]
    assert (web.host, web.state, web.running) == ("local", "running", True)
    assert (web.vcpus, web.memory_mib, web.iops) == (2, 1024, 300)
    assert (web.transition_id, web.transition_state, web.profile) == (tid, "completed", "smoke")
    assert web.transition_terminal is True and web.image == "builtin"
    assert web.vm_dir == str(svc.settings.vms_dir / "web1")
    db = by_name["db1"]
    assert (db.state, db.running, db.transition_state) == ("shut off", False, "predicted")
    assert get_vm(svc.pool, store, "web1") == web

    done = delete_vm(svc.pool, store, "web1", cancel=svc.cancel)
    assert done.removed and done.ended == [] and done.vm.name == "web1"
    assert "web1" not in mv.domain_names()
    assert not (svc.settings.vms_dir / "web1").exists()
    assert store.get(tid).state == "completed"  # an ended transition is left as it was
    assert store.events(tid)[-1].message == "VM web1 deleted from host local on request"
    assert [v.name for v in list_vms(svc.pool, store).items] == ["db1"]
    with pytest.raises(NotFoundError, match="no VM named 'web1'"):
        delete_vm(svc.pool, store, "web1", cancel=svc.cancel)


def test_delete_ends_a_running_transition_first(
    svc: TransitionService, hv: LibvirtHypervisor
) -> None:
    tid = mv.launched(svc.settings, svc.store, hv, "web1", state=S.RUNNING)
    order: list[str] = []

    def cancel(t: str) -> object:
        # The VM is still there when its transition ends: the controller, which
        # drives it until then, must not find it gone and race to re-create it.
        order.append("cancel" if "web1" in mv.domain_names() else "cancel-after-removal")
        return svc.cancel(t)

    done = delete_vm(svc.pool, svc.store, "web1", cancel=cancel)
    assert order == ["cancel"] and done.ended == [tid]
    assert S(svc.store.get(tid).state).terminal
    assert "web1" not in mv.domain_names()
    messages = [e.message for e in svc.store.events(tid)]
    assert messages[-1] == "VM web1 deleted from host local on request"


def test_an_unfinished_resize_of_the_vm_is_ended_too(
    svc: TransitionService, hv: LibvirtHypervisor
) -> None:
    mv.launched(svc.settings, svc.store, hv, "web1", state=S.COMPLETED)
    resize = svc.store.create_transition(
        kind=TransitionKind.RESIZE, vm_name="web1", profile="smoke", requested=Allocation(1, 512)
    )
    done = delete_vm(svc.pool, svc.store, "web1", cancel=svc.cancel)
    assert done.ended == [resize.id]
    assert svc.store.get(resize.id).state == "cancelled"


def test_a_domain_vmshadow_did_not_make_is_refused_and_left_alone(
    svc: TransitionService, hv: LibvirtHypervisor
) -> None:
    # "test" is the test driver's own domain, running, with no vmshadow metadata.
    assert hv.is_running("test")
    for call in (
        lambda: get_vm(svc.pool, svc.store, "test"),
        lambda: delete_vm(svc.pool, svc.store, "test", cancel=svc.cancel),
    ):
        with pytest.raises(NotFoundError, match="'test' is not a VM vmshadow launched"):
            call()
    assert hv.is_running("test")


def test_an_unreachable_host_is_reported_not_fatal(tmp_path: Path, hv: LibvirtHypervisor) -> None:
    svc = service_for(tmp_path, local="test:///default", gone="test:///nonexistent/host.xml")
    try:
        mv.launched(svc.settings, svc.store, hv, "web1")
        listing = list_vms(svc.pool, svc.store)
        assert [v.name for v in listing.items] == ["web1"]
        assert [e.host for e in listing.errors] == ["gone"]
        assert "cannot connect" in listing.errors[0].error
        # Found on the host that answers: deleting does not need the other.
        delete_vm(svc.pool, svc.store, "web1", cancel=svc.cancel)
        # Not found where it could look, but it might be on the host that is down.
        with pytest.raises(HypervisorError, match="cannot reach gone"):
            get_vm(svc.pool, svc.store, "web1")
    finally:
        svc.pool.close()


def test_fields_the_adapter_adds_are_passed_through(
    svc: TransitionService, hv: LibvirtHypervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    mv.launched(svc.settings, svc.store, hv, "web1")
    real = LibvirtHypervisor.full_vm_info

    def extended(self: LibvirtHypervisor, name: str) -> dict[str, object] | None:
        info = real(self, name)
        extra = {"image": "debian12", "network": "user", "ssh_port": 2222, "ssh_user": "debian"}
        return None if info is None else {**info, **extra, "addresses": ["10.0.2.15"]}

    monkeypatch.setattr(LibvirtHypervisor, "full_vm_info", extended)
    vm = get_vm(svc.pool, svc.store, "web1")
    assert (vm.image, vm.network, vm.addresses) == ("debian12", "user", ["10.0.2.15"])
    assert vm.ssh == "ssh -p 2222 debian@127.0.0.1"
    assert ssh_command(2222, None) == "ssh -p 2222 <user>@127.0.0.1"
    assert ssh_command(None, "debian") is None
