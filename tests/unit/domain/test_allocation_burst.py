"""An allocation's IOPS burst: optional, and refused where libvirt or QEMU
would refuse it, naming the field."""

import pytest

from vmshadow.domain.allocation import MAX_BURST_S, Allocation
from vmshadow.domain.errors import ConfigError


def test_without_a_burst_an_allocation_reads_as_before() -> None:
    a = Allocation(2, 1024, 400)
    assert (a.iops_burst, a.iops_burst_s) == (None, None)
    assert a.as_dict() == {"vcpus": 2, "memory_mib": 1024, "iops": 400}


def test_a_burst_shows_in_the_dict() -> None:
    a = Allocation(2, 1024, 400, iops_burst=4000, iops_burst_s=5)
    assert a.as_dict() == {
        "vcpus": 2,
        "memory_mib": 1024,
        "iops": 400,
        "iops_burst": 4000,
        "iops_burst_s": 5,
    }
    assert Allocation(2, 1024, 400, iops_burst=400).as_dict()["iops_burst_s"] is None


@pytest.mark.parametrize(
    ("iops", "burst", "length", "field"),
    [
        (None, 1000, None, "iops_burst"),  # a burst above no rate
        (400, 399, None, "iops_burst"),  # QEMU: max below avg
        (400, 20_000_000, None, "iops_burst"),
        (400, None, 5, "iops_burst_s"),  # a length without a burst rate
        (400, 1000, 0, "iops_burst_s"),  # QEMU: "the burst length cannot be 0"
        (400, 1000, MAX_BURST_S + 1, "iops_burst_s"),
    ],
)
def test_bursts_qemu_would_refuse_are_refused(
    iops: int | None, burst: int | None, length: int | None, field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Allocation(2, 1024, iops, iops_burst=burst, iops_burst_s=length)
    assert err.value.field == field


def test_covers_compares_the_rate_not_the_burst() -> None:
    big_burst = Allocation(2, 1024, 400, iops_burst=4000, iops_burst_s=60)
    assert Allocation(2, 1024, 400).covers(big_burst)
    assert not big_burst.covers(Allocation(2, 1024, 500))


def test_an_overridden_rate_keeps_the_bursts_proportion() -> None:
    from vmshadow.domain.allocation import with_burst

    shape = {"rate": 100, "burst": 1000, "burst_s": 7}
    assert with_burst(Allocation(2, 1024, 100), shape) == Allocation(2, 1024, 100, 1000, 7)
    assert with_burst(Allocation(2, 1024, 50), shape) == Allocation(2, 1024, 50, 500, 7)
    # No cap, no recorded burst, or a malformed one: as it was.
    assert with_burst(Allocation(2, 1024), shape) == Allocation(2, 1024)
    assert with_burst(Allocation(2, 1024, 50), None) == Allocation(2, 1024, 50)
    assert (
        with_burst(Allocation(2, 1024, 50), {"rate": 0, "burst": 1, "burst_s": 1}).iops_burst
        is None
    )
