"""Every ``--emit`` format against its golden file, and the refusals.

Regenerate after an intended change with
``VMSHADOW_REGEN_GOLDEN=1 pytest tests/unit/emit`` and review the diff like
code. Whether the tools themselves accept the output is
``tests/integration/test_emit_tools.py``'s business.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmshadow.domain.errors import ConfigError
from vmshadow.emit import FORMATS, Recommendation, emit, from_plan, from_view

GOLDEN = Path(__file__).parent / "golden"
FULL = Recommendation(
    "web1", 2, 1536, 400, max_vcpus=4, max_memory_mib=4096, disk_gib=20, origin="transition t1"
)
# No IOPS, no disk, no room to grow: the shortest form of each.
BARE = Recommendation("db_2.prod", 1, 512, origin="plan")
# An IOPS cap with a burst rate and length.
BURST = Recommendation("web1", 2, 1536, 400, iops_burst=4000, iops_burst_s=12, origin="plan")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VMSHADOW_REGEN_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; regenerate if intended"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(("case", "rec"), [("full", FULL), ("bare", BARE), ("burst", BURST)])
def test_each_format_matches_its_golden_file(fmt: str, case: str, rec: Recommendation) -> None:
    check_golden(f"{fmt}-{case}.txt", emit(fmt, rec))


def test_an_unknown_format_names_the_field_and_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        emit("ansible", FULL)
    assert err.value.field == "emit" and "virsh" in err.value.reason


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "web 1; rm -rf /"}, "name"),
        ({"name": "-rf"}, "name"),
        ({"vcpus": 0}, "vcpus"),
        ({"memory_mib": 0}, "memory_mib"),
        ({"iops": 0}, "iops"),
        ({"disk_target": "../vda"}, "disk_target"),
    ],
)
def test_values_no_tool_could_take_are_refused(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"name": "web1", "vcpus": 1, "memory_mib": 512}
    with pytest.raises(ConfigError) as err:
        Recommendation(**{**base, **kwargs})  # type: ignore[arg-type]
    assert err.value.field == field


def test_from_view_prefers_the_decided_size_and_keeps_the_asked_one_as_room() -> None:
    doc = {
        "id": "t9",
        "state": "running",
        "vm_name": "web1",
        "requested": {"vcpus": 4, "memory_mib": 4096, "iops": None},
        "recommended": {"vcpus": 1, "memory_mib": 768, "iops": 200},
        "final": {"vcpus": 2, "memory_mib": 1024, "iops": 300},
        "guest": {"disk_gib": 12},
    }
    rec = from_view(doc)
    assert (rec.vcpus, rec.memory_mib, rec.iops) == (2, 1024, 300)
    assert (rec.top_vcpus, rec.top_memory_mib, rec.disk_gib) == (4, 4096, 12)
    assert rec.origin == "transition t9"
    undecided = from_view({**doc, "final": None})
    assert (undecided.vcpus, undecided.iops) == (1, 200)


def test_from_view_refuses_a_transition_without_a_prediction() -> None:
    with pytest.raises(ConfigError) as err:
        from_view({"id": "t1", "state": "profiling", "vm_name": "web1", "recommended": None})
    assert err.value.field == "state" and "profiling" in err.value.reason


def test_the_maxima_never_fall_below_the_recommendation() -> None:
    """A recommendation above what was asked (the shadow said the VM needs more)."""
    rec = from_plan("web1", {"vcpus": 4, "memory_mib": 2048}, requested={"vcpus": 2})
    assert (rec.top_vcpus, rec.top_memory_mib) == (4, 2048)
    assert "maxvcpus" not in emit("virt-install", rec)


def test_a_transitions_burst_follows_its_decided_rate() -> None:
    """The store keeps the decided rate; the prediction's burst is scaled to it."""
    doc = {
        "id": "t1",
        "vm_name": "web1",
        "state": "running",
        "final": {"vcpus": 2, "memory_mib": 1024, "iops": 200},
        "prediction": {"iops_bucket": {"rate": 100, "burst": 1500, "burst_s": 9}},
    }
    rec = from_view(doc)
    assert (rec.iops, rec.iops_burst, rec.iops_burst_s) == (200, 3000, 9)
    doc["prediction"] = {}  # predicted before bursts were recommended
    assert from_view(doc).iops_burst is None
