"""The VMs vmshadow launched, across the host pool: list, show and delete them.

A VM is vmshadow's when its domain's ``<metadata>`` carries vmshadow's element
with role ``vm`` (``hypervisor.domainxml.ShadowMetadata``); nothing else is
listed, and nothing else is ever removed: a domain of the same name that some
other tool made is refused by name. A host that cannot be reached is reported
beside the list rather than failing it, since one host down must not hide the
VMs on the others.

Deleting ends the VM's transition first when it is still going (through
``TransitionService.cancel``, passed in as ``cancel``), then removes the VM:
in the other order the controller, still driving the transition, could
define or start the VM again right after it was removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from vmshadow.domain.errors import ConflictError, HypervisorError, NotFoundError
from vmshadow.domain.transition import Transition, TransitionKind, TransitionState
from vmshadow.domain.vm import ssh_command
from vmshadow.hypervisor.pool import HostPool
from vmshadow.store.repository import Store

Cancel = Callable[[str], object]


@dataclass(frozen=True)
class ManagedVm:
    """One VM vmshadow launched, as libvirt and the store describe it."""

    name: str
    host: str
    state: str  # libvirt's: "running", "shut off", "paused", ...
    running: bool
    vcpus: int | None
    memory_mib: int | None
    iops: int | None  # the disk IOPS cap; None: no cap
    image: str | None  # "builtin" or an image store name
    network: str | None  # "user", "network:NAME", "bridge:BR" or "none"
    addresses: list[str]
    ssh_port: int | None  # user networking: a port on the host's 127.0.0.1 to the guest's 22
    ssh_user: str | None
    ssh: str | None  # the command that reaches the guest, when one is known
    guest_ready: bool | None
    vm_dir: str | None
    transition_id: str | None
    transition_kind: str | None
    transition_state: str | None  # None: the store does not know this transition
    transition_terminal: bool | None
    profile: str | None
    load: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HostProblem:
    """A host (or one VM on it) that could not be read; the rest of the list stands."""

    host: str
    error: str
    vm: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VmListing:
    items: list[ManagedVm] = field(default_factory=list)
    errors: list[HostProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": [v.as_dict() for v in self.items],
            "errors": [e.as_dict() for e in self.errors],
        }


@dataclass(frozen=True)
class Deleted:
    """What ``delete_vm`` did: the VM it removed and the transitions it ended."""

    vm: ManagedVm
    removed: bool  # False: the domain was already gone when removal ran
    ended: list[str]  # ids of the transitions cancelled first

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.vm.as_dict(), "removed": self.removed, "ended": self.ended}


def _int(value: object) -> int | None:
    # full_vm_info is a loose dict (and gains keys over time): read it defensively.
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _entry(host: str, info: dict[str, object], row: Transition | None) -> ManagedVm:
    port = _int(info.get("ssh_port"))
    # The user the launch asked cloud-init for; None: the image's own default user.
    user = info.get("ssh_user") or ((row.guest or {}).get("user") if row is not None else None)
    image = info.get("image")
    addresses = info.get("addresses")
    ready = info.get("guest_ready")
    tid = info.get("transition_id")
    return ManagedVm(
        name=str(info.get("name")),
        host=host,
        state=str(info.get("state") or "unknown"),
        running=bool(info.get("running")),
        vcpus=_int(info.get("vcpus")),
        memory_mib=_int(info.get("memory_mib")),
        iops=_int(info.get("iops")),
        # Before the adapter reports the image, the transition that launched the VM knows it.
        image=str(image) if image else (row.image if row is not None else None),
        network=str(info["network"]) if info.get("network") else None,
        addresses=[str(a) for a in addresses] if isinstance(addresses, list) else [],
        ssh_port=port,
        ssh_user=str(user) if user else None,
        ssh=ssh_command(port, str(user) if user else None),
        guest_ready=ready if isinstance(ready, bool) else None,
        vm_dir=str(info["vm_dir"]) if info.get("vm_dir") else None,
        transition_id=str(tid) if tid else None,
        transition_kind=row.kind.value if row is not None else None,
        transition_state=row.state.value if row is not None else None,
        transition_terminal=TransitionState(row.state).terminal if row is not None else None,
        profile=row.profile if row is not None else None,
        load=row.load if row is not None else None,
    )


def _read_host(pool: HostPool, host: str) -> tuple[list[dict[str, object]], list[HostProblem]]:
    """The full_vm_info of every VM of ours on ``host``, and what could not be read."""
    hv = pool.connect(host)
    infos: list[dict[str, object]] = []
    problems: list[HostProblem] = []
    for name, meta in hv.list_managed_vms():
        try:
            info = hv.full_vm_info(name)
        except HypervisorError as exc:
            problems.append(HostProblem(host, str(exc), vm=name))
            continue
        if info is None:
            continue  # removed between the listing and this read
        if info.get("running") and info.get("image") not in (None, "builtin"):
            # Asked live: the addresses change (DHCP) and "ready" is a fact of now.
            status = hv.guest_status(name)
            if status is not None:
                info = {
                    **info,
                    "addresses": list(status.addresses),
                    "guest_ready": status.ready,
                }
        # The listing's metadata is what made it ours: keep its transition id.
        infos.append({**info, "name": name, "transition_id": meta.transition_id})
    return infos, problems


def list_vms(pool: HostPool, store: Store) -> VmListing:
    """Every VM vmshadow launched on every host of the pool, by host then name."""
    found: list[tuple[str, dict[str, object]]] = []
    errors: list[HostProblem] = []
    for host in pool.names:
        try:
            infos, problems = _read_host(pool, host)
        except HypervisorError as exc:
            errors.append(HostProblem(host, str(exc)))
            continue
        found += [(host, i) for i in sorted(infos, key=lambda i: str(i["name"]))]
        errors += problems
    # One query for every transition: a SELECT per VM is slow with many VMs.
    rows = store.get_many(str(i["transition_id"]) for _h, i in found if i.get("transition_id"))
    items = [_entry(h, i, rows.get(str(i.get("transition_id")))) for h, i in found]
    return VmListing(items, errors)


def _locate(pool: HostPool, name: str) -> tuple[str, str | None]:
    """The host holding vmshadow's VM ``name`` and its transition id.

    NotFoundError when no reachable host has it, naming a domain of that name
    that vmshadow did not make; HypervisorError when a host that could hold it
    cannot be reached (a 404 then might be wrong)."""
    foreign: list[str] = []
    down: list[str] = []
    for host in pool.names:
        try:
            hv = pool.connect(host)
            for vm, meta in hv.list_managed_vms():
                if vm == name:
                    return host, meta.transition_id
            if hv.full_vm_info(name) is not None:
                foreign.append(host)
        except HypervisorError as exc:
            down.append(f"{host} ({exc})")
    if foreign:
        where = "" if len(pool.names) == 1 else f" on host {', '.join(foreign)}"
        raise NotFoundError(
            f"{name!r} is not a VM vmshadow launched: the domain of that name{where} was made "
            "by something else, and vmshadow never touches it"
        )
    if down:
        raise HypervisorError(
            f"no VM named {name!r} on the hosts that answered; cannot reach {', '.join(down)}"
        )
    raise NotFoundError(f"no VM named {name!r} that vmshadow launched")


def get_vm(pool: HostPool, store: Store, name: str) -> ManagedVm:
    """One VM vmshadow launched, by name (the domain's name, unique across the pool)."""
    host, tid = _locate(pool, name)
    info = pool.connect(host).full_vm_info(name)
    if info is None:
        raise NotFoundError(f"no VM named {name!r} that vmshadow launched (it just went away)")
    row = store.get_many([tid]).get(tid) if tid else None
    return _entry(host, {**info, "name": name, "transition_id": tid}, row)


def _to_end(store: Store, vm: ManagedVm) -> list[str]:
    """The unfinished transitions of this VM: the one that launched it, and any
    resize of it (a resize keeps the launch's metadata, so only the store knows)."""
    tids = [vm.transition_id] if vm.transition_id and vm.transition_terminal is False else []
    for row in store.unfinished():
        same_host = row.vm_host in (None, vm.host)
        resize = row.kind == TransitionKind.RESIZE.value
        if row.vm_name == vm.name and resize and same_host and row.id not in tids:
            tids.append(row.id)
    return tids


def delete_vm(pool: HostPool, store: Store, name: str, *, cancel: Cancel) -> Deleted:
    """End the VM's unfinished transitions, then destroy and remove the VM.

    Only a VM vmshadow launched (NotFoundError otherwise, and the domain is left
    as it is). ``cancel`` is ``TransitionService.cancel``."""
    vm = get_vm(pool, store, name)
    ended = []
    for tid in _to_end(store, vm):
        # Ended meanwhile (completed, or cancelled by someone else): nothing to stop.
        with contextlib.suppress(ConflictError, NotFoundError):
            cancel(tid)
            ended.append(tid)
    removed = pool.connect(vm.host).remove_full_vm(name)
    note = f"VM {name} deleted from host {vm.host} on request"
    # On the timeline of each transition the store knows, so its page says where the VM went.
    known = vm.transition_id if vm.transition_state is not None else None
    for tid in dict.fromkeys(t for t in [known, *ended] if t):
        store.add_event(tid, "info", note)
    return Deleted(vm, removed, ended)
