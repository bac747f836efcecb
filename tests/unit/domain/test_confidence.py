"""A prediction's confidence: intervals, the 0-4 risk level and what drives it."""

from __future__ import annotations

from typing import Any

import pytest

from vmshadow.api.schemas import PredictionConfidence
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.confidence import (
    NO_HISTORY,
    NO_INTERVAL,
    confidence_of,
    contention_text,
    coverage_text,
    interval_text,
    risk_text,
)
from vmshadow.domain.prediction import Prediction, Requirement

NEED = Requirement(1.5, 600.0, 80.0)
REC = Allocation(2, 768, 100)
NARROW = {"vcpus": [1.3, 1.7], "memory_mib": [560.0, 650.0], "iops": [70.0, 90.0]}
QUIET = {"limit": 0.1, "max_wait": 0.02, "max_wait_phase": "s0-cpu", "contended_phases": []}


def pred(history: int = 40, rec: Allocation = REC, **detail: Any) -> Prediction:
    """A confident prediction unless ``detail`` says otherwise."""
    base: dict[str, Any] = {
        "interval": NARROW,
        "interval_coverage": 0.9,
        "history_count": history,
        "contention": QUIET,
    }
    base.update(detail)
    return Prediction("learned", "learned", history, 1.2, NEED, rec, detail=base)


def test_a_covered_narrow_prediction_with_history_is_very_low_risk() -> None:
    c = confidence_of(pred())
    assert (c.risk, c.risk_word, c.drivers) == (0, "very low", ())
    assert c.intervals == {"vcpus": (1.3, 1.7), "memory_mib": (560.0, 650.0), "iops": (70.0, 90.0)}
    assert c.coverage == 0.9 and c.history_count == 40 and c.contention == QUIET


@pytest.mark.parametrize(
    ("change", "driver"),
    [
        (
            {"rec": Allocation(1, 768, 100)},
            "recommendation below the interval's upper bound (vCPU 1 < 1.7)",
        ),
        (
            {"interval": {**NARROW, "memory_mib": [450.0, 760.0]}},
            "wide interval around the need (memory ±26 %)",
        ),
        (
            {"contention": {**QUIET, "max_wait": 0.18, "contended_phases": ["s1-cpu"]}},
            "host contention 18 % during the shadow run",
        ),
        ({"history": 0, "history_count": 0}, NO_HISTORY),
        (
            {"ramp": [{"step": 0, "load": 50.0}], "load": 200.0},
            "one ramp step: extrapolated x4.0 beyond it",
        ),
        (
            {"ramp": [{"load": 25.0}, {"load": 50.0}, {"load": 100.0}], "load": 250.0},
            "3 ramp steps: extrapolated x2.5 beyond the highest",
        ),
        (
            {"capped_at_request": ["vcpus"]},
            "vCPU need near the requested size: the recommendation was cut to it",
        ),
    ],
)
def test_each_driver_raises_the_level_by_one(change: dict[str, Any], driver: str) -> None:
    c = confidence_of(pred(**change))
    assert c.drivers == (driver,) and c.risk == 1


def test_steal_alone_over_the_limit_counts_as_contention() -> None:
    steal = {"limit": 0.1, "max_wait": 0.01, "max_steal": 0.12, "contended_phases": []}
    assert confidence_of(pred(contention=steal)).drivers == (
        "host contention 12 % during the shadow run",
    )


def test_just_under_the_thresholds_raises_nothing() -> None:
    c = confidence_of(
        pred(
            rec=Allocation(2, 650, 90),  # exactly the upper bounds
            interval={**NARROW, "vcpus": [1.2, 1.95]},  # 0.75 wide on a 1.5 need: half
            ramp=[{"load": 100.0}],
            load=199.0,
            capped_at_request=[],
        )
    )
    assert c.drivers == () and c.risk == 0


def test_the_level_is_capped_at_four_and_lists_every_driver() -> None:
    c = confidence_of(
        pred(
            history=0,
            rec=Allocation(1, 512, 50),
            interval={"vcpus": [0.5, 3.0], "memory_mib": [500.0, 700.0], "iops": [60.0, 99.0]},
            history_count=0,
            contention={**QUIET, "max_wait": 0.3, "contended_phases": ["s2-cpu"]},
            ramp=[{"load": 10.0}],
            load=100.0,
            capped_at_request=["memory_mib"],
        )
    )
    assert c.risk == 4 and c.risk_word == "very high" and len(c.drivers) == 6
    assert c.drivers[0] == (
        "recommendation below the interval's upper bound "
        "(vCPU 1 < 3, memory 512 < 700, IOPS 50 < 99)"
    )


def test_worse_inputs_never_lower_the_level() -> None:
    steps: list[dict[str, Any]] = [
        {},
        {"history": 0, "history_count": 0},
        {"contention": {**QUIET, "max_wait": 0.5}},
        {"ramp": [{"load": 1.0}], "load": 9.0},
        {"interval": {**NARROW, "vcpus": [0.1, 4.0]}},
    ]
    applied: dict[str, Any] = {}
    levels = []
    for step in steps:
        applied.update(step)
        levels.append(confidence_of(pred(**applied)).risk)
    assert levels == sorted(levels) and levels[-1] == 4


def test_a_prediction_stored_before_intervals_says_so_and_invents_none() -> None:
    old = Prediction(
        "ramp-extrapolation",
        "physical extrapolation from 3 ramp steps",
        0,
        1.2,
        NEED,
        REC,
        detail={"ramp": [{"load": 100.0}], "contention": QUIET},
    )
    c = confidence_of(old, load=150.0)
    assert c.intervals is None and c.coverage is None
    assert c.drivers == (NO_INTERVAL, NO_HISTORY) and c.risk == 2
    assert c.history_count == 0  # Prediction.history_size stands in
    doc = c.as_dict()
    assert doc["intervals"] is None and doc["coverage"] is None
    assert [interval_text(doc, r) for r in ("vcpus", "memory_mib", "iops")] == ["—"] * 3
    assert coverage_text(doc) == "—"


def test_without_an_interval_the_need_itself_is_the_bound() -> None:
    capped = Prediction("x", "x", 5, 1.2, NEED, Allocation(1, 768, None), detail={})
    assert confidence_of(capped).drivers == (
        "recommendation below the predicted need (vCPU 1 < 1.5)",
        NO_INTERVAL,
    )


def test_history_size_is_the_fallback_and_a_malformed_pair_is_no_interval() -> None:
    p = pred(history=7, interval={"vcpus": [2.0, 1.0], "memory_mib": "x"})
    del p.detail["history_count"]
    c = confidence_of(p)
    assert c.history_count == 7
    assert c.intervals == {"vcpus": None, "memory_mib": None, "iops": None}
    assert interval_text(c.as_dict(), "vcpus") == "—"


def test_the_words_the_views_use() -> None:
    doc = confidence_of(pred(contention={**QUIET, "max_wait": 0.18, "contended_phases": ["s1"]}))
    d = doc.as_dict()
    assert risk_text(d) == "risk 1 of 4 (low)"
    assert interval_text(d, "vcpus") == "1.3-1.7" and interval_text(d, "memory_mib") == "560-650"
    assert coverage_text(d) == "90 %"
    assert contention_text(d) == "vCPU wait 18 % (limit 10 %), over it in s1"
    assert contention_text({"contention": None}) == "not measured"
    assert risk_text({}) == "risk not reported"


def test_the_api_schema_takes_the_domain_shape_as_it_is() -> None:
    for p in (pred(), pred(interval=None, contention=None, history_count=0)):
        doc = confidence_of(p).as_dict()
        assert PredictionConfidence.model_validate(doc).model_dump(mode="json") == doc
