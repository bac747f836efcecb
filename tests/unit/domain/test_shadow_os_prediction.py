"""The target OS at idle in a prediction: the figure, the floor it sets, and the
lines the CLI and the web card show (and why the built-in OS stood in)."""

from __future__ import annotations

from typing import Any

from vmshadow.cli.views import prediction_notes
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import (
    Prediction,
    Requirement,
    idle_footprint,
    shadow_os_notes,
    with_shadow_os,
)
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.shadow import IDLE_PHASE_ID, OsIdle, ShadowOs
from vmshadow.web.views import prediction_card


def _prediction(vcpus: float = 1.0, memory: float = 300.0) -> Prediction:
    return Prediction(
        method="ramp-extrapolation",
        label="physical extrapolation",
        history_size=0,
        margin=1.2,
        need=Requirement(vcpus, memory, 100.0),
        recommended=Allocation(2, 512, 120),
        detail={"samples": 10},
    )


def _point(source: Source, busy: float, mem: float | None) -> UsagePoint:
    return UsagePoint(
        t=1.0,
        source=source,
        phase_id=IDLE_PHASE_ID,
        busy_vcpus=busy,
        mem_used_mib=mem,
        read_iops=0,
        write_iops=0,
        read_bps=0,
        write_bps=0,
    )


def test_idle_is_the_guests_memory_peak_and_the_hosts_mean_cpu() -> None:
    idle = idle_footprint(
        [
            _point(Source.HOST, 0.02, 400.0),  # the balloon's figure: the guest's is better
            _point(Source.HOST, 0.04, 400.0),
            _point(Source.GUEST, 0.5, 41.0),
            _point(Source.GUEST, 0.5, 43.0),
        ],
        processes=23,
    )
    assert idle == OsIdle(memory_mib=43.0, vcpus=0.03, processes=23)


def test_a_need_that_covers_the_idle_os_stays_as_it_is() -> None:
    p = with_shadow_os(
        _prediction(), ShadowOs("web-os", "target"), OsIdle(memory_mib=45.0, vcpus=0.02)
    )
    assert p.need == _prediction().need and p.recommended == _prediction().recommended
    assert p.detail["os_idle"] == {
        "memory_mib": 45.0,
        "vcpus": 0.02,
        "processes": None,
        "settled": True,
    }
    assert p.detail["shadow_os"] == {"image": "web-os", "used": "target", "reason": ""}
    assert "raised_to_os_idle" not in p.detail


def test_never_below_the_idle_os() -> None:
    """A need under what the OS alone takes is raised to it, and the
    recommendation with it at the margin."""
    p = with_shadow_os(
        _prediction(vcpus=0.1, memory=30.0),
        ShadowOs("fat-os", "target"),
        OsIdle(memory_mib=700.0, vcpus=0.3),
    )
    assert p.need.memory_mib == 700.0 and p.need.vcpus == 0.3
    assert p.recommended.memory_mib >= 700.0 * 1.2
    assert p.recommended.vcpus == 2  # the original was already above the floor
    assert p.detail["raised_to_os_idle"] == ["vcpus", "memory_mib"]


def test_the_floor_lifts_the_interval_too() -> None:
    """The confidence reads the interval: a floor above it would show a need
    outside its own range."""
    low = _prediction(vcpus=0.1, memory=30.0)
    low.detail["interval"] = {"vcpus": [0.05, 0.2], "memory_mib": [20.0, 800.0], "iops": [1, 2]}
    p = with_shadow_os(low, ShadowOs("fat-os", "target"), OsIdle(memory_mib=700.0, vcpus=0.3))
    assert p.detail["interval"] == {
        "vcpus": [0.3, 0.3],
        "memory_mib": [700.0, 800.0],
        "iops": [1, 2],
    }


def test_the_built_in_os_standing_in_is_recorded_without_an_idle_figure() -> None:
    why = "its agent did not answer within 120 s"
    p = with_shadow_os(_prediction(), ShadowOs("old-os", "builtin", why), None)
    assert p.need == _prediction().need
    assert p.detail["shadow_os"] == {"image": "old-os", "used": "builtin", "reason": why}
    assert "os_idle" not in p.detail


def _doc(**pred: Any) -> dict[str, Any]:
    base = {
        "method": "ramp-extrapolation",
        "label": "physical extrapolation",
        "history_size": 0,
        "margin": 1.2,
        "need": {"vcpus": 1.0, "memory_mib": 300.0, "iops": 100.0},
        "recommended": {"vcpus": 2, "memory_mib": 512, "iops": 120},
    }
    return {
        "kind": "launch",
        "prediction": {**base, **pred},
        "requested": {"vcpus": 2, "memory_mib": 1024, "iops": None},
    }


IDLE = {"memory_mib": 41.3, "vcpus": 0.015, "processes": None, "settled": True}
FALLBACK = {"image": "old-os", "used": "builtin", "reason": "the guest has no python3"}


def test_the_idle_line_as_the_cli_and_the_card_show_it() -> None:
    assert shadow_os_notes({"os_idle": IDLE}) == [
        "Your OS at idle: 41 MiB, 0.01 vCPU; the need includes it."
    ]
    cli = prediction_notes(_doc(os_idle=IDLE, shadow_os={"image": "x", "used": "target"}))
    assert any("Your OS at idle: 41 MiB, 0.01 vCPU" in n for n in cli)
    card = prediction_card(_doc(), {"os_idle": IDLE, "shadow_os": {"used": "target"}})
    assert card is not None and not card.os_fallback
    assert card.os_notes == ["Your OS at idle: 41 MiB, 0.01 vCPU; the need includes it."]


def test_the_fallback_says_so_and_why_everywhere() -> None:
    (line,) = shadow_os_notes({"shadow_os": FALLBACK})
    assert "built-in OS, not the OS of image old-os: the guest has no python3" in line
    cli = prediction_notes(_doc(shadow_os=FALLBACK))
    assert any("the guest has no python3" in n and n.startswith("[yellow]") for n in cli)
    # A document that carries the prediction's detail whole works too.
    assert any("old-os" in n for n in prediction_notes(_doc(detail={"shadow_os": FALLBACK})))
    card = prediction_card(_doc(), {"shadow_os": FALLBACK})
    assert card is not None and card.os_fallback and "old-os" in card.os_notes[0]


def test_a_built_in_transition_shows_no_os_line() -> None:
    assert shadow_os_notes({}) == []
    card = prediction_card(_doc(), {})
    assert card is not None and card.os_notes == []


def test_the_card_renders_the_os_line_escaped() -> None:
    from vmshadow.web.pages import _env

    hostile = {**FALLBACK, "image": "<b>x</b>"}
    card = prediction_card(_doc(), {"shadow_os": hostile})
    html = (
        _env()
        .get_template("_prediction.html")
        .render(card=card, changes=[], t={"terminal": False, "state": "predicted"})
    )
    assert 'data-shadow-os="builtin"' in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
