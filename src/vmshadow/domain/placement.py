"""Which host of the pool gets a shadow, and which its full VM. Pure: no I/O.

A host's room is what libvirt reports (CPUs, memory, free memory now) minus
what vmshadow has booked there: running shadows, pending and launched VMs of
its transitions. vCPUs are booked one for one (no over-commit): a shadow
measures a vCPU of its own, and a launched VM sized from that measurement
should get what it was sized for.

The full VM goes where its shadow measured when it fits there, because the
measurement is specific to that host's CPU and disks; otherwise to the freest
host with the same CPU model, where the measurement still holds best; and the
reason is recorded so the user can see why.

    >>> a = HostCapacity("a", cpus=4, memory_mib=8192, cpu_model="EPYC")
    >>> place_vm([a], Allocation(2, 2048), shadow_host="a").reason
    'on a, where its shadow measured'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vmshadow.domain.allocation import Allocation


@dataclass(frozen=True)
class Booking:
    """What one transition holds on one host: a running shadow or a VM."""

    transition_id: str
    host: str
    vcpus: int
    memory_mib: int
    shadow: bool = False


@dataclass(frozen=True)
class HostCapacity:
    name: str
    cpus: int
    memory_mib: int
    cpu_model: str
    # None when the driver gives no figure (libvirt's test driver reports 0).
    free_memory_mib: int | None = None
    booked_vcpus: int = 0
    booked_memory_mib: int = 0
    shadows: int = 0
    error: str | None = None  # set when the host could not be read: never placed on

    @property
    def room_vcpus(self) -> int:
        return self.cpus - self.booked_vcpus

    @property
    def room_memory_mib(self) -> int:
        room = self.memory_mib - self.booked_memory_mib
        if self.free_memory_mib is not None:
            room = min(room, self.free_memory_mib)
        return room

    @property
    def freeness(self) -> float:
        """Share of the host still free, by its scarcer resource (0 full .. 1 empty)."""
        if self.cpus <= 0 or self.memory_mib <= 0:
            return 0.0
        return min(self.room_vcpus / self.cpus, self.room_memory_mib / self.memory_mib)

    def shortfall(self, a: Allocation) -> str | None:
        """Why ``a`` does not fit here, in words; None when it fits."""
        if self.error is not None:
            return f"unreachable ({self.error})"
        short = []
        if a.vcpus > self.room_vcpus:
            short.append(f"{max(self.room_vcpus, 0)} of {self.cpus} vCPUs free")
        if a.memory_mib > self.room_memory_mib:
            short.append(f"{max(self.room_memory_mib, 0)} MiB free")
        return ", ".join(short) or None

    def booked(self, b: Booking) -> HostCapacity:
        return replace(
            self,
            booked_vcpus=self.booked_vcpus + b.vcpus,
            booked_memory_mib=self.booked_memory_mib + b.memory_mib,
            shadows=self.shadows + (1 if b.shadow else 0),
        )


@dataclass(frozen=True)
class Placement:
    host: str
    reason: str


@dataclass(frozen=True)
class NoRoom:
    """No host can take it now; the reason names each host's shortfall.
    ``never``: not even an empty host of the candidates could, so waiting is futile."""

    reason: str
    never: bool = False


def capacities(
    hosts: Iterable[HostCapacity], bookings: Iterable[Booking], *, exclude: str | None = None
) -> list[HostCapacity]:
    """The hosts with every booking subtracted, except those of transition ``exclude``
    (a transition being placed again must not compete with itself)."""
    by_name = {h.name: h for h in hosts}
    for b in bookings:
        if b.transition_id != exclude and b.host in by_name:
            by_name[b.host] = by_name[b.host].booked(b)
    return list(by_name.values())


def _freest(hosts: Sequence[HostCapacity]) -> HostCapacity:
    # Ties go to the first name, so two controllers deciding alike agree.
    return sorted(hosts, key=lambda h: (-h.freeness, h.name))[0]


def _why_not(hosts: Sequence[HostCapacity], a: Allocation) -> str:
    return "; ".join(f"{h.name}: {h.shortfall(a) or 'fits'}" for h in hosts) or "no hosts"


def _size(a: Allocation) -> str:
    return f"{a.vcpus} vCPU, {a.memory_mib} MiB"


def never_fits(hosts: Sequence[HostCapacity], a: Allocation) -> str | None:
    """Why none of ``hosts`` could hold ``a`` even with nothing else on it; None
    when one could, or when one could not be read (it may be the one that can).

    >>> never_fits([HostCapacity("a", cpus=2, memory_mib=4096, cpu_model="m")], Allocation(6, 2048))
    'no host could ever hold 6 vCPU, 2048 MiB: a has 2 CPUs, 4096 MiB'
    """
    if not hosts or any(h.error is not None for h in hosts):
        return None
    if any(a.vcpus <= h.cpus and a.memory_mib <= h.memory_mib for h in hosts):
        return None
    sizes = "; ".join(f"{h.name} has {h.cpus} CPUs, {h.memory_mib} MiB" for h in hosts)
    return f"no host could ever hold {_size(a)}: {sizes}"


def place_shadow(
    hosts: Sequence[HostCapacity],
    shadow: Allocation,
    *,
    max_shadows: int,
    prefer: str | None = None,
) -> Placement | NoRoom:
    """A host with room for one more shadow: ``prefer`` (a resized VM's own host,
    where the measurement matters most) when it can, else the freest."""
    open_hosts = []
    full = []
    for h in hosts:
        if h.shortfall(shadow) is None and h.shadows < max_shadows:
            open_hosts.append(h)
        else:
            why = h.shortfall(shadow) or f"{h.shadows} of {max_shadows} shadows running"
            full.append(f"{h.name}: {why}")
    if not open_hosts:
        return NoRoom(f"no host has room for a shadow ({_size(shadow)}): " + "; ".join(full))
    for h in open_hosts:
        if h.name == prefer:
            return Placement(h.name, f"on {h.name}, the VM's own host")
    best = _freest(open_hosts)
    if len(hosts) == 1:
        return Placement(best.name, f"on {best.name}, the only host")
    return Placement(
        best.name,
        f"on {best.name}, the freest host ({best.room_vcpus} vCPUs, "
        f"{best.room_memory_mib} MiB free)",
    )


def place_vm(
    hosts: Sequence[HostCapacity], allocation: Allocation, *, shadow_host: str | None
) -> Placement | NoRoom:
    """Where the full VM goes: its shadow's host if it fits, else the freest host
    with the same CPU model. ``hosts`` must not count this transition's own bookings."""
    by_name: Mapping[str, HostCapacity] = {h.name: h for h in hosts}
    measured = by_name.get(shadow_host) if shadow_host else None
    if measured is not None:
        why_not_here = measured.shortfall(allocation)
        if why_not_here is None:
            return Placement(measured.name, f"on {measured.name}, where its shadow measured")
        same = [
            h
            for h in hosts
            if h.cpu_model == measured.cpu_model
            and h.name != measured.name
            and h.shortfall(allocation) is None
        ]
        if not same:
            model = [h for h in hosts if h.cpu_model == measured.cpu_model]
            never = never_fits(model, allocation)
            if never is not None:
                return NoRoom(f"{never} (CPU model {measured.cpu_model})", never=True)
            return NoRoom(
                f"no host with CPU model {measured.cpu_model} has room for "
                f"{_size(allocation)}: {_why_not(hosts, allocation)}"
            )
        best = _freest(same)
        return Placement(
            best.name,
            f"on {best.name}: {measured.name}, where its shadow measured, has no room "
            f"({why_not_here}); {best.name} is the freest host with the same CPU model "
            f"({measured.cpu_model})",
        )
    fits = [h for h in hosts if h.shortfall(allocation) is None]
    if not fits:
        never = never_fits(hosts, allocation)
        if never is not None:
            return NoRoom(never, never=True)
        return NoRoom(f"no host has room for {_size(allocation)}: {_why_not(hosts, allocation)}")
    best = _freest(fits)
    lost = f" ({shadow_host}, where its shadow measured, is not in the pool)" if shadow_host else ""
    return Placement(best.name, f"on {best.name}, the freest host{lost}")


@dataclass(frozen=True)
class Holding:
    """What one transition record says it holds, as the store keeps it."""

    transition_id: str
    vm_name: str
    active: bool  # not yet in a final state
    vm_host: str | None
    vm_vcpus: int
    vm_memory_mib: int
    vm_started: bool
    shadow_host: str | None = None  # set only while its shadow runs


def bookings(
    holdings: Sequence[Holding],
    present: Mapping[str, set[str]],
    shadow: Allocation,
) -> list[Booking]:
    """Every booking the store's records imply, ``holdings`` oldest first.

    A VM is booked at the size of its newest transition (a resize replaces the
    launch's size). An unfinished transition books its pending VM; a finished
    one only the VM it launched, and only while that VM still exists on its
    host (``present``: names of the domains on each host), since a VM the user
    removed frees its room. A domain of the same name defined after it keeps
    the room booked: it uses the room as much.
    """
    out = []
    newest: dict[str, Holding] = {}
    for h in holdings:
        if h.shadow_host is not None and h.active:
            out.append(
                Booking(h.transition_id, h.shadow_host, shadow.vcpus, shadow.memory_mib, True)
            )
        if h.vm_host is not None and (h.active or h.vm_started):
            newest[h.vm_name] = h
    for h in newest.values():
        assert h.vm_host is not None
        if h.active or h.vm_name in present.get(h.vm_host, set()):
            out.append(Booking(h.transition_id, h.vm_host, h.vm_vcpus, h.vm_memory_mib))
    return out


def placement_text(view: Mapping[str, Any] | None) -> str:
    """A transition's ``placement`` in words for people: where the shadow ran,
    where the VM goes and why ('' before anything is placed)."""
    if not view or not (view.get("shadow_host") or view.get("vm_host")):
        return ""
    parts = []
    if view.get("shadow_host"):
        parts.append(f"shadow on {view['shadow_host']}")
    if view.get("reason"):
        parts.append(f"VM {view['reason']}")
    elif view.get("vm_host"):
        parts.append(f"VM on {view['vm_host']}")
    return "; ".join(parts)
