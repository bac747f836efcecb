"""Placement of shadows and full VMs on the host pool."""

from __future__ import annotations

import doctest

import pytest

from vmshadow.domain import placement
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.placement import (
    Booking,
    Holding,
    HostCapacity,
    NoRoom,
    Placement,
    bookings,
    capacities,
    place_shadow,
    place_vm,
    placement_text,
)

SHADOW = Allocation(1, 512)


def host(
    name: str, cpus: int = 8, mem: int = 16384, model: str = "EPYC", **kw: object
) -> HostCapacity:
    return HostCapacity(name, cpus=cpus, memory_mib=mem, cpu_model=model, **kw)  # type: ignore[arg-type]


def test_docstring_example() -> None:
    assert doctest.testmod(placement).failed == 0


def test_vm_stays_where_its_shadow_measured_when_it_fits() -> None:
    hosts = [host("a", cpus=4), host("b", cpus=64, mem=262144)]
    p = place_vm(hosts, Allocation(4, 8192), shadow_host="a")
    assert p == Placement("a", "on a, where its shadow measured")


def test_vm_moves_to_the_freest_host_with_the_same_cpu_model() -> None:
    hosts = [
        host("a", cpus=4, mem=4096),
        host("b", cpus=16, mem=32768, booked_vcpus=12),  # same model, fits, fuller
        host("c", cpus=16, mem=32768),  # same model, emptiest
        host("d", cpus=128, mem=524288, model="Xeon"),  # freest of all, other model
    ]
    p = place_vm(hosts, Allocation(4, 8192), shadow_host="a")
    assert isinstance(p, Placement)
    assert p.host == "c"
    assert "a, where its shadow measured, has no room (4096 MiB free)" in p.reason
    assert "c is the freest host with the same CPU model (EPYC)" in p.reason


def test_no_host_of_the_same_model_means_no_room_with_every_reason() -> None:
    hosts = [host("a", cpus=4, booked_vcpus=2), host("d", cpus=128, model="Xeon")]
    p = place_vm(hosts, Allocation(4, 1024), shadow_host="a")
    assert isinstance(p, NoRoom) and not p.never  # a fits once its VMs go
    assert "CPU model EPYC" in p.reason
    assert "a: 2 of 4 vCPUs free" in p.reason and "d: fits" in p.reason


def test_a_size_no_candidate_could_ever_hold_is_never_room() -> None:
    # d could hold it, but the measurement is for a's CPU model: waiting is futile.
    hosts = [host("a", cpus=2, booked_vcpus=1), host("d", cpus=128, model="Xeon")]
    p = place_vm(hosts, Allocation(6, 1024), shadow_host="a")
    assert isinstance(p, NoRoom) and p.never
    assert p.reason == (
        "no host could ever hold 6 vCPU, 1024 MiB: a has 2 CPUs, 16384 MiB (CPU model EPYC)"
    )
    p = place_vm(
        [host("a", cpus=2), host("b", cpus=4, mem=1024)], Allocation(4, 2048), shadow_host=None
    )
    assert isinstance(p, NoRoom) and p.never  # each host lacks one of the two
    assert "a has 2 CPUs, 16384 MiB; b has 4 CPUs, 1024 MiB" in p.reason


def test_an_unreadable_host_might_hold_it_so_it_waits() -> None:
    hosts = [host("a", cpus=2), host("b", error="connection refused")]
    p = place_vm(hosts, Allocation(6, 1024), shadow_host=None)
    assert isinstance(p, NoRoom) and not p.never


def test_unreachable_hosts_are_never_chosen() -> None:
    hosts = [host("a", error="connection refused"), host("b", cpus=2)]
    p = place_vm(hosts, Allocation(2, 1024), shadow_host="a")
    assert isinstance(p, Placement) and p.host == "b"
    assert "unreachable (connection refused)" in p.reason


def test_free_memory_now_caps_the_booked_room() -> None:
    h = host("a", mem=16384, free_memory_mib=1000)
    assert h.room_memory_mib == 1000
    assert h.shortfall(Allocation(1, 2048)) == "1000 MiB free"
    # A driver without the figure (None) is judged by bookings alone.
    assert host("a", mem=16384, booked_memory_mib=4096).room_memory_mib == 12288


def test_vm_without_a_known_shadow_host_goes_to_the_freest() -> None:
    hosts = [host("a", booked_vcpus=6), host("b")]
    p = place_vm(hosts, Allocation(1, 512), shadow_host="gone")
    assert isinstance(p, Placement) and p.host == "b"
    assert "gone, where its shadow measured, is not in the pool" in p.reason


def test_shadow_goes_to_the_freest_host_with_a_free_slot() -> None:
    hosts = [host("a", shadows=1), host("b", booked_vcpus=4), host("c", booked_vcpus=2)]
    p = place_shadow(hosts, SHADOW, max_shadows=1)
    assert isinstance(p, Placement) and p.host == "c"
    assert p.reason == "on c, the freest host (6 vCPUs, 16384 MiB free)"


def test_shadow_prefers_the_resized_vms_host() -> None:
    hosts = [host("a", booked_vcpus=6), host("b")]
    assert place_shadow(hosts, SHADOW, max_shadows=2, prefer="a") == Placement(
        "a", "on a, the VM's own host"
    )


def test_no_room_for_a_shadow_names_each_host() -> None:
    hosts = [host("a", shadows=2), host("b", cpus=1, booked_vcpus=1)]
    p = place_shadow(hosts, SHADOW, max_shadows=2)
    assert isinstance(p, NoRoom)
    assert "a: 2 of 2 shadows running" in p.reason
    assert "b: 0 of 1 vCPUs free" in p.reason


def test_ties_go_to_the_first_name() -> None:
    p = place_shadow([host("b"), host("a")], SHADOW, max_shadows=1)
    assert isinstance(p, Placement) and p.host == "a"


def test_capacities_subtract_bookings_except_the_transitions_own() -> None:
    caps = capacities(
        [host("a"), host("b")],
        [
            Booking("t1", "a", 2, 2048),
            Booking("t2", "a", 1, 512, shadow=True),
            Booking("t3", "b", 4, 4096),
            Booking("t9", "zz", 4, 4096),  # a host no longer in the pool
        ],
        exclude="t3",
    )
    a, b = caps
    assert (a.room_vcpus, a.room_memory_mib, a.shadows) == (5, 13824, 1)
    assert (b.room_vcpus, b.room_memory_mib) == (8, 16384)


def hold(tid: str, name: str, *, active: bool, started: bool, **kw: object) -> Holding:
    base: dict[str, object] = {
        "vm_host": "a",
        "vm_vcpus": 2,
        "vm_memory_mib": 2048,
        "shadow_host": None,
    }
    base.update(kw)
    return Holding(tid, name, active=active, vm_started=started, **base)  # type: ignore[arg-type]


def test_bookings_from_the_records() -> None:
    found = bookings(
        [
            hold("t1", "web1", active=False, started=True),  # launched, still there
            hold("t2", "web1", active=False, started=True, vm_vcpus=4),  # resized since
            hold("t3", "gone", active=False, started=True),  # removed by the user
            hold("t4", "never", active=False, started=False),  # ended before launch
            hold("t5", "new", active=True, started=False, vm_host="b", shadow_host="a"),
        ],
        {"a": {"web1"}},
        SHADOW,
    )
    assert sorted(found, key=lambda b: (b.transition_id, b.shadow)) == [
        Booking("t2", "a", 4, 2048),
        Booking("t5", "b", 2, 2048),
        Booking("t5", "a", 1, 512, shadow=True),
    ]


@pytest.mark.parametrize("cpus", [0, -1])
def test_a_host_without_cpus_is_never_free(cpus: int) -> None:
    assert host("a", cpus=cpus).freeness == 0.0


def test_placement_in_words() -> None:
    assert placement_text(None) == ""
    assert placement_text({"shadow_host": None, "vm_host": None, "reason": None}) == ""
    assert placement_text({"shadow_host": "a", "vm_host": "a", "reason": None}) == (
        "shadow on a; VM on a"
    )
    why = "on b, the freest host with CPU model m1"
    moved = {"shadow_host": "a", "vm_host": "b", "reason": why}
    assert placement_text(moved) == "shadow on a; VM on b, the freest host with CPU model m1"
