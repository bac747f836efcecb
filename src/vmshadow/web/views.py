"""What the web UI's templates show, worked out from the API's transition view.

Pure functions of plain dicts, so the wording and the findings are tested
without a browser. The words follow the right-sizers people know: krr's
severity of ``requested -> recommended``, the cloud optimisers' findings
(under-provisioned, over-provisioned, optimized).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from vmshadow.config import QuotaSettings
from vmshadow.controller.realized import Realized
from vmshadow.domain.prediction import shadow_os_notes
from vmshadow.domain.progress import plan_clock
from vmshadow.domain.transition import TransitionState
from vmshadow.predict.trackrecord import track_record_text
from vmshadow.web.confidence import CardConfidence, card_confidence, row_interval

RESOURCES: tuple[tuple[str, str, str], ...] = (
    # key, unit, what the requirement measures
    ("vcpus", "vCPU", "P95 busy"),
    ("memory_mib", "MiB", "peak"),
    ("iops", "IOPS", "P95"),
)
LIFECYCLE = [
    TransitionState.REQUESTED,
    TransitionState.SHADOWING,
    TransitionState.PROFILING,
    TransitionState.PREDICTED,
    TransitionState.LAUNCHING,
    TransitionState.RUNNING,
    TransitionState.COMPLETED,
]
# The user has a decision to take only here; the page says so.
WAITING_FOR_USER = TransitionState.PREDICTED


def age(iso: str | None, now: datetime) -> str:
    """'42 s', '5 min', '3 h', '2 d' since ``iso``."""
    if not iso:
        return "-"
    secs = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    if secs < 90:
        return f"{secs:.0f} s"
    if secs < 90 * 60:
        return f"{secs / 60:.0f} min"
    if secs < 36 * 3600:
        return f"{secs / 3600:.0f} h"
    return f"{secs / 86400:.0f} d"


def utc_text(iso: str | None) -> str:
    """'2031-05-01 09:30 UTC': what a page shows before its script puts it in local time."""
    if not iso:
        return "-"
    at = datetime.fromisoformat(iso)
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M UTC")


def amount(value: float | None, unit: str) -> str:
    """A figure with its unit; whole numbers stay whole, fractions keep 3 digits."""
    if value is None:
        return "no cap" if unit == "IOPS" else "-"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def size_text(alloc: Mapping[str, Any] | None) -> str:
    if not alloc:
        return "-"
    parts = [amount(alloc.get("vcpus"), "vCPU"), amount(alloc.get("memory_mib"), "MiB")]
    if alloc.get("iops"):
        parts.append(amount(alloc["iops"], "IOPS"))
    return ", ".join(parts)


@dataclass(frozen=True)
class SizeLimits:
    """The largest size the form may ask for, and what sets each bound."""

    vcpus: int
    vcpus_by: str  # quota | host
    memory_mib: int
    memory_by: str


def size_limits(quotas: QuotaSettings, hosts: Sequence[Mapping[str, Any]]) -> SizeLimits:
    """The quota or the largest reachable host, whichever is less, per resource.

    The service refuses a size above either (``TransitionService.check_size``);
    the form says so up front rather than quoting a quota of 64 vCPUs on a
    host with 2 CPUs.
    """
    up = [h for h in hosts if h.get("reachable")]
    cpus = max((int(h["cpus"]) for h in up), default=None)
    mem = max((int(h["memory_mib"]) for h in up), default=None)
    vcpus, vcpus_by = quotas.max_vcpus, "quota"
    if cpus is not None and cpus < vcpus:
        vcpus, vcpus_by = cpus, "host"
    memory, memory_by = quotas.max_memory_mib, "quota"
    if mem is not None and mem < memory:
        memory, memory_by = mem, "host"
    return SizeLimits(vcpus, vcpus_by, memory, memory_by)


@dataclass(frozen=True)
class Change:
    """One resource as ``requested -> recommended`` with its finding."""

    resource: str
    unit: str
    requested: str
    recommended: str
    finding: str  # under-provisioned | over-provisioned | optimized | no cap asked
    severity: str  # css class: risk | change | fine | info


def changes(
    requested: Mapping[str, Any] | None, recommended: Mapping[str, Any] | None
) -> list[Change]:
    if not requested or not recommended:
        return []
    out = []
    for key, unit, _what in RESOURCES:
        req, rec = requested.get(key), recommended.get(key)
        if rec is None:
            continue
        if req is None:
            finding, sev = "no cap asked", "info"
        elif req < rec:
            finding, sev = "under-provisioned", "risk"
        elif req > rec:
            finding, sev = "over-provisioned", "change"
        else:
            finding, sev = "optimized", "fine"
        out.append(Change(key, unit, amount(req, unit), amount(rec, unit), finding, sev))
    return out


@dataclass(frozen=True)
class Step:
    state: str
    status: str  # done | current | todo | ended (failed or cancelled here)


def lifecycle(view: Mapping[str, Any]) -> list[Step]:
    """The states in order, marked done / current / still to come; where it ended."""
    state = TransitionState(view["state"])
    reached = {e["state"] for e in view.get("events", []) if e.get("state")}
    steps = []
    if state in LIFECYCLE:
        at = LIFECYCLE.index(state)
        for i, s in enumerate(LIFECYCLE):
            status = "done" if i < at else "current" if i == at else "todo"
            if s is TransitionState.COMPLETED and state is s:
                status = "done"
            steps.append(Step(s.value, status))
        return steps
    # failed or cancelled: show how far it got, then where it stopped.
    for s in LIFECYCLE:
        if s.value in reached:
            steps.append(Step(s.value, "done"))
    steps.append(Step(state.value, "ended"))
    return steps


def progress_text(plan: Mapping[str, Any], points: Sequence[tuple[str | None, float]]) -> str:
    """'step 2/4 (s1-cpu), about 45 s left': the CLI's progress rule over the
    current round's (phase id, t) samples, ``plan`` as ``GET /profiles`` gives it."""
    clock = plan_clock(plan)
    for phase_id, t in points:
        clock.take(phase_id, t)
    return clock.text()


@dataclass(frozen=True)
class ShadowStart:
    """When a scheduled transition's shadow starts: it is being started, or at ``at``."""

    started: bool
    at: str  # ISO time; the page shows it in the browser's time zone
    lead_s: float


def shadow_start(view: Mapping[str, Any], lead_s: float, now: datetime) -> ShadowStart | None:
    """For a scheduled transition still waiting (``requested``): the controller
    starts its shadow ``lead_s`` before the schedule (``controller.steps.due``),
    so that the prediction is ready on time. None for any other transition."""
    if view["state"] != TransitionState.REQUESTED.value or not view.get("scheduled_at"):
        return None
    at = datetime.fromisoformat(view["scheduled_at"]) - timedelta(seconds=lead_s)
    return ShadowStart(now >= at, at.isoformat(), lead_s)


def lead_text(seconds: float) -> str:
    """'3 h', '2 min', '45 s': how long before the schedule a shadow starts."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


@dataclass(frozen=True)
class CardRow:
    resource: str
    unit: str
    what: str
    requested: str
    median: str
    upper: str
    margin: str
    recommended: str
    interval: str = "—"  # the need's range before the margin


@dataclass(frozen=True)
class Card:
    method: str
    label: str
    history_size: int
    quantiles: bool  # the method gives a median and a P90, not one figure
    rows: list[CardRow]
    samples: int | None
    round: int | None
    created_at: str | None
    notes: list[str]
    # The shadow's OS: the target's at idle, or why the built-in one stood in.
    os_notes: list[str] = field(default_factory=list)
    os_fallback: bool = False
    confidence: CardConfidence | None = None


def _x(margin: float | None) -> str:
    return f"x{margin:g}" if margin is not None else "-"


def prediction_card(
    view: Mapping[str, Any],
    detail: Mapping[str, Any] | None,
    confidence: Mapping[str, Any] | None = None,
) -> Card | None:
    """The prediction as VPA shows bounds: median, upper quantile, margin, target;
    and how sure it is (``confidence``: ``Confidence.as_dict()``)."""
    pred = view.get("prediction")
    if not pred:
        return None
    detail = detail or {}
    need = pred.get("need") or {}
    median = detail.get("median")
    p90 = detail.get("p90")
    margins = detail.get("margins") or {}
    quantiles = isinstance(median, dict) and isinstance(p90, dict)
    requested = view.get("requested") or {}
    rows = []
    for key, unit, what in RESOURCES:
        rec = pred["recommended"].get(key)
        if key == "iops" and rec is None and not need.get(key):
            continue
        if quantiles:
            assert isinstance(median, dict) and isinstance(p90, dict)
            med, upper = amount(median.get(key), unit), amount(p90.get(key), unit)
        else:
            med, upper = amount(need.get(key), unit), "-"
        rows.append(
            CardRow(
                resource=key,
                unit=unit,
                what=what,
                requested=amount(requested.get(key), unit),
                median=med,
                upper=upper,
                margin=_x(margins.get(key, pred.get("margin"))),
                recommended=amount(rec, unit),
                interval=row_interval(confidence, key, unit),
            )
        )
    notes = []
    conf = card_confidence(confidence)
    if not quantiles and not (conf and conf.intervals):
        notes.append(
            "This method gives one estimate, not a median and a P90: "
            "the margin is all that covers its error."
        )
    record = track_record_text(detail.get("held_out"))
    if record:
        notes.append(record)
    if pred.get("history_size", 0) == 0 and conf is None:
        # With a confidence block, its drivers say so ("no history behind the answer").
        notes.append("No history stood behind it: it rests on the shadow's measurements alone.")
    if detail.get("capped_at_request"):
        notes.append(
            "Cut to the requested size for " + ", ".join(detail["capped_at_request"]) + "."
        )
    ran_out = detail.get("ran_out") or {}
    words = {"vcpus": "CPU", "memory_mib": "memory"}
    for key, bound in ran_out.items():
        if bound:
            notes.append(
                f"The shadow ran out of {words.get(key, key)}: its figure is extrapolated "
                "from a saturated run."
            )
    if detail.get("max_sustained_load") is not None and view.get("load"):
        top = float(detail["max_sustained_load"])
        if top and float(view["load"]) > top:
            notes.append(
                f"Extrapolated x{float(view['load']) / top:.1f} beyond the highest load "
                f"the shadow sustained ({top:g})."
            )
    for key in ("note", "flavour_note"):
        if detail.get(key):
            notes.append(str(detail[key]))
    if detail.get("flavour"):
        notes.append(f"Flavour: {detail['flavour']}.")
    used = detail.get("shadow_os")
    return Card(
        os_notes=shadow_os_notes(detail),
        os_fallback=isinstance(used, Mapping) and used.get("used") == "builtin",
        method=pred["method"],
        label=pred["label"],
        history_size=(
            conf.history_count
            if conf is not None and conf.history_count is not None
            else int(pred.get("history_size") or 0)
        ),
        quantiles=quantiles,
        rows=rows,
        samples=detail.get("samples"),
        round=pred.get("round"),
        created_at=pred.get("created_at"),
        notes=notes,
        confidence=conf,
    )


@dataclass(frozen=True)
class RealizedRow:
    resource: str
    unit: str
    what: str
    predicted: str
    allocated: str
    realized: str
    verdict: str
    severity: str


TOO_EARLY = "too early to tell"


def realized_rows(view: Mapping[str, Any], real: Realized | None) -> list[RealizedRow]:
    """After launch: what the VM really used beside the prediction and its allocation."""
    pred = view.get("prediction") or {}
    need = pred.get("need") or {}
    final = view.get("final") or {}
    if real is None or not final:
        return []
    got = real.requirement.as_dict()
    rows = []
    for key, unit, what in RESOURCES:
        alloc = final.get(key)
        used = float(got[key])
        predicted = need.get(key)
        # QEMU throttles the capped disk to its cap, so an all-disk figure above
        # the cap is the uncapped root disk's I/O, not a shortage of the cap.
        all_disks = key == "iops" and real.iops_all_disks
        if not real.settled:
            verdict, sev = TOO_EARLY, "info"
        elif all_disks and alloc is not None and used > alloc:
            verdict, sev = "above the cap with the root disk, which is not capped", "info"
        elif alloc is not None and used > alloc:
            verdict, sev = "under-provisioned: used more than allocated", "risk"
        elif predicted is not None and used > float(predicted):
            verdict, sev = "above the prediction, within the margin", "change"
        elif predicted is not None:
            verdict, sev = "within the prediction", "fine"
        else:
            verdict, sev = "no prediction to compare", "info"
        rows.append(
            RealizedRow(
                resource=key,
                unit=unit,
                what=f"{what}, all disks" if all_disks else what,
                predicted=amount(predicted, unit) if predicted is not None else "-",
                allocated=amount(alloc, unit),
                realized=amount(round(used, 3), unit),
                verdict=verdict,
                severity=sev,
            )
        )
    return rows
