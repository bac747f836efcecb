"""What the web UI's pages say: findings, the prediction card, realized vs predicted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vmshadow.config import QuotaSettings
from vmshadow.controller.realized import Realized, realized
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.confidence import confidence_of
from vmshadow.domain.prediction import Prediction, Requirement
from vmshadow.domain.samples import Source, UsagePoint
from vmshadow.domain.transition import TransitionKind
from vmshadow.store.db import make_engine, migrate
from vmshadow.store.repository import Store
from vmshadow.web.views import (
    SizeLimits,
    age,
    amount,
    changes,
    lead_text,
    lifecycle,
    prediction_card,
    progress_text,
    realized_rows,
    shadow_start,
    size_limits,
    size_text,
    utc_text,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def view(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "state": "predicted",
        "load": 200.0,
        "requested": {"vcpus": 2, "memory_mib": 2048, "iops": None},
        "recommended": {"vcpus": 5, "memory_mib": 1280, "iops": 120},
        "final": None,
        "prediction": {
            "method": "quantile-model",
            "label": "quantile model",
            "history_size": 612,
            "margin": 1.2,
            "need": {"vcpus": 3.4, "memory_mib": 900.0, "iops": 100.0},
            "recommended": {"vcpus": 5, "memory_mib": 1280, "iops": 120},
            "round": 0,
            "created_at": NOW.isoformat(),
        },
        "events": [],
    }
    base.update(kw)
    return base


def test_age_reads_like_a_person_says_it() -> None:
    at = lambda s: (NOW - timedelta(seconds=s)).isoformat()  # noqa: E731
    assert [age(at(s), NOW) for s in (5, 600, 7200, 3 * 86400)] == ["5 s", "10 min", "2 h", "3 d"]
    assert age(None, NOW) == "-"


def test_amounts_keep_whole_numbers_whole_and_name_no_cap() -> None:
    assert amount(2, "vCPU") == "2 vCPU"
    assert amount(1.006, "vCPU") == "1.01 vCPU"
    assert amount(2048, "MiB") == "2,048 MiB"
    assert amount(None, "IOPS") == "no cap"
    assert size_text({"vcpus": 1, "memory_mib": 512, "iops": None}) == "1 vCPU, 512 MiB"


def test_changes_name_the_finding_per_resource() -> None:
    got = changes(view()["requested"], view()["recommended"])
    assert [(c.resource, c.finding, c.severity) for c in got] == [
        ("vcpus", "under-provisioned", "risk"),
        ("memory_mib", "over-provisioned", "change"),
        ("iops", "no cap asked", "info"),
    ]
    same = {"vcpus": 1, "memory_mib": 512, "iops": 10}
    assert {c.finding for c in changes(same, same)} == {"optimized"}
    assert changes(same, None) == []


def test_card_shows_median_p90_and_margin_of_a_quantile_model() -> None:
    detail = {
        "median": {"vcpus": 2.9, "memory_mib": 760.0, "iops": 80.0},
        "p90": {"vcpus": 3.4, "memory_mib": 900.0, "iops": 100.0},
        "margins": {"vcpus": 1.2, "memory_mib": 1.05, "iops": 1.54},
        "samples": 58,
        "capped_at_request": ["vcpus"],
        "held_out": {
            "records": 3381,
            "folds": 8,
            "margin_chosen_on_them": True,
            "resources": {
                "vcpus": {"under": 0.049, "waste": 0.136},
                "memory_mib": {"under": 0.034, "waste": 0.077},
                "iops": {"under": 0.046, "waste": 0.53},
            },
        },
    }
    card = prediction_card(view(), detail)
    assert card is not None and card.quantiles and card.history_size == 612
    cpu, mem, _iops = card.rows
    assert (cpu.requested, cpu.median, cpu.upper, cpu.margin, cpu.recommended) == (
        "2 vCPU",
        "2.9 vCPU",
        "3.4 vCPU",
        "x1.2",
        "5 vCPU",
    )
    assert mem.margin == "x1.05"
    assert "Cut to the requested size for vcpus." in card.notes
    assert (
        "On 3,381 history records of jobs its fold models had not seen (8 folds) "
        "(the margins were chosen on them), this model's recommendation fell short for "
        "4.9% (vCPU), 3.4% (memory), 4.6% (IOPS) of them; where it sufficed, on average "
        "13.6% (vCPU), 7.7% (memory), 53.0% (IOPS) of it went unused."
    ) in card.notes


def test_card_of_a_single_estimate_says_so_and_admits_no_history() -> None:
    v = view()
    v["prediction"]["history_size"] = 0
    card = prediction_card(v, {"max_sustained_load": 50})
    assert card is not None and not card.quantiles
    assert card.rows[0].median == "3.4 vCPU" and card.rows[0].upper == "-"
    text = " ".join(card.notes)
    assert "one estimate" in text and "No history" in text
    assert "x4.0 beyond the highest load the shadow sustained (50)" in text
    assert prediction_card(view(prediction=None), None) is None


def ramp_confidence(**kw: Any) -> dict[str, Any]:
    """A ramp prediction's confidence as ``domain.confidence`` words it."""
    p = Prediction(
        "ramp-extrapolation",
        "physical extrapolation",
        0,
        1.2,
        Requirement(3.4, 900, 100),
        Allocation(5, 1280, 120),
        detail={"ramp": [{"load": 50.0}], **kw},
    )
    return confidence_of(p, load=200.0).as_dict()


def test_a_ramp_card_shows_the_interval_not_an_empty_p90_and_its_risk() -> None:
    v = view()
    v["prediction"]["history_size"] = 0
    conf = ramp_confidence(
        interval={"vcpus": [2.8, 4.1], "memory_mib": [850, 980], "iops": [90, 130]},
        interval_coverage=0.9,
        contention={"limit": 0.1, "max_wait": 0.18, "contended_phases": ["s1-cpu"]},
    )
    card = prediction_card(v, {"max_sustained_load": 50}, conf)
    assert card is not None and not card.quantiles and card.confidence is not None
    assert [r.interval for r in card.rows] == ["2.8-4.1 vCPU", "850-980 MiB", "90-130 IOPS"]
    c = card.confidence
    assert (c.risk, c.risk_text, c.severity) == (4, "Risk 4 of 4 (very high)", "risk")
    assert c.intervals and c.coverage == "90 %" and c.history_count == 0
    assert c.drivers == [
        "recommendation below the interval's upper bound (IOPS 120 < 130)",
        "host contention 18 % during the shadow run",
        "no history behind the answer",
        "one ramp step: extrapolated x4.0 beyond it",
    ]
    assert c.contention == "vCPU wait 18 % (limit 10 %), over it in s1-cpu"
    # The drivers say "no history": the card's own note would repeat it.
    assert not any("No history" in n for n in card.notes)


def test_a_card_stored_before_intervals_shows_dashes_and_says_so() -> None:
    card = prediction_card(view(), {}, ramp_confidence())
    assert card is not None and card.confidence is not None
    assert not card.confidence.intervals and card.confidence.coverage == "—"
    assert {r.interval for r in card.rows} == {"—"}
    assert "no interval recorded" in card.confidence.drivers
    assert card.confidence.contention == "not measured"
    unreported = prediction_card(view(), {}, None)
    assert unreported is not None and unreported.confidence is None


def test_lifecycle_marks_done_current_and_where_it_stopped() -> None:
    steps = lifecycle(view())
    assert [(s.state, s.status) for s in steps][2:5] == [
        ("profiling", "done"),
        ("predicted", "current"),
        ("launching", "todo"),
    ]
    assert lifecycle(view(state="completed"))[-1].status == "done"
    events = [{"state": "requested"}, {"state": "shadowing"}, {"state": None}]
    failed = lifecycle(view(state="failed", events=events))
    assert [(s.state, s.status) for s in failed] == [
        ("requested", "done"),
        ("shadowing", "done"),
        ("failed", "ended"),
    ]


def test_realized_beside_predicted_with_a_verdict() -> None:
    v = view(final={"vcpus": 5, "memory_mib": 1280, "iops": 120})
    real = Realized(Requirement(3.0, 1000.0, 150.0), samples=60, seconds=59.0)
    rows = {r.resource: r for r in realized_rows(v, real)}
    assert rows["vcpus"].verdict == "within the prediction"
    assert rows["memory_mib"].verdict == "above the prediction, within the margin"
    assert rows["iops"].severity == "risk" and rows["iops"].realized == "150 IOPS"
    assert realized_rows(v, None) == []
    assert realized_rows(view(), real) == []  # not launched: nothing to compare


def _launched(tmp_path: Path, image: str) -> tuple[Store, str]:
    store = Store(make_engine(f"sqlite:///{tmp_path / (image + '.db')}"))
    migrate(store.engine)
    tid = store.create_transition(
        kind=TransitionKind.LAUNCH,
        vm_name="web1",
        profile="web",
        requested=Allocation(2, 1024),
        image=image,
    ).id
    return store, tid


def _vm_samples(store: Store, tid: str, t: range, iops: float) -> None:
    store.add_samples(
        tid,
        "vm",
        0,
        [UsagePoint(float(s), Source.HOST, None, 3.0, 800.0, iops, 0, 0, 0) for s in t],
    )


def test_boot_io_is_too_early_to_tell_then_judged_on_the_capped_disk(tmp_path: Path) -> None:
    """Issue 15: root-disk I/O while the VM boots was called under-provisioned
    against the scratch disk's cap 28 s after launch."""
    v = view(final={"vcpus": 5, "memory_mib": 1280, "iops": 120})
    store, tid = _launched(tmp_path, "builtin")
    _vm_samples(store, tid, range(1, 29), 900.0)  # the boot reads the root disk
    rows = realized_rows(v, realized(store, tid))
    assert [r.verdict for r in rows] == ["too early to tell"] * 3
    assert {r.severity for r in rows} == {"info"}
    _vm_samples(store, tid, range(29, 100), 80.0)
    rows = realized_rows(v, realized(store, tid))
    iops = next(r for r in rows if r.resource == "iops")
    assert iops.realized == "80 IOPS" and iops.verdict == "within the prediction"
    assert iops.what == "P95, all disks"
    # Above the cap on every disk together: the root disk's, not the cap's shortage.
    _vm_samples(store, tid, range(100, 200), 500.0)
    iops = next(r for r in realized_rows(v, realized(store, tid)) if r.resource == "iops")
    assert iops.severity == "info" and "root disk" in iops.verdict
    # A user image has one disk, the capped one: above the cap is a shortage.
    own, oid = _launched(tmp_path, "debian12")
    _vm_samples(own, oid, range(1, 200), 500.0)
    iops = next(r for r in realized_rows(v, realized(own, oid)) if r.resource == "iops")
    assert iops.severity == "risk" and iops.verdict.startswith("under-provisioned")
    assert iops.what == "P95"


def test_size_limits_are_the_quota_or_the_largest_host_whichever_is_less() -> None:
    quotas = QuotaSettings(max_vcpus=64, max_memory_mib=4096)
    small = {"reachable": True, "cpus": 2, "memory_mib": 65536}
    big_but_down = {"reachable": False, "cpus": 128, "memory_mib": 1024}
    # "At most 64 vCPUs" on a 2-CPU host was the bug: the host bounds the vCPUs here.
    assert size_limits(quotas, [small, big_but_down]) == SizeLimits(2, "host", 4096, "quota")
    assert size_limits(quotas, []) == SizeLimits(64, "quota", 4096, "quota")


def test_utc_text_is_what_shows_before_the_script_localises_it() -> None:
    assert utc_text("2031-05-01T18:30:00+09:00") == "2031-05-01 09:30 UTC"
    assert utc_text(None) == "-"


def test_the_page_tells_the_time_left_by_the_clis_rule() -> None:
    ramp = {"ramp": [25, 50, 100, 200]}
    seen = [("s0-cpu", 1.0), ("s0-memory", 9.0), ("s0-io", 17.0), ("s1-cpu", 25.0)]
    # How many phases a step has is known once the second step starts.
    assert progress_text(ramp, seen[:3]) == "step 1/4 (s0-io)"
    assert progress_text(ramp, [*seen, (None, 29.0), ("s1-cpu", 30.0)]) == (
        "step 2/4 (s1-cpu), about 67 s left"  # 9 phases of 8 s, 5 s into this one
    )
    smoke = {"phases": [{"duration_s": 8}] * 3}
    assert progress_text(smoke, [("cpu", 0.0)]) == "phase 1/3 (cpu), about 24 s left"
    assert progress_text({}, []) == ""


def test_a_scheduled_shadow_starts_its_lead_before_the_schedule() -> None:
    at = NOW + timedelta(hours=5)
    waiting = view(state="requested", scheduled_at=at.isoformat())
    three_h = 3 * 3600.0
    before = shadow_start(waiting, three_h, NOW)
    assert before is not None and not before.started
    assert datetime.fromisoformat(before.at) == NOW + timedelta(hours=2)
    started = shadow_start(waiting, three_h, NOW + timedelta(hours=2))
    assert started is not None and started.started
    assert shadow_start(view(state="requested", scheduled_at=None), three_h, NOW) is None
    assert shadow_start(view(state="shadowing", scheduled_at=at.isoformat()), 60, NOW) is None
    assert [lead_text(s) for s in (three_h, 120.0, 45.0)] == ["3 h", "2 min", "45 s"]
