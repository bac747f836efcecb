"""Honest evaluation: cross-validation with folds grouped by job.

The same job (at any input size) is never in a fold's training and test sides.
Models train on every pair of a training fold (any target size) and are scored
on the test fold's "smallest -> largest" pairs by default (``pairs="all"``
scores every pair). In the same run, on the same cases:

- the model with the fixed margin (x1.2) and with the calibrated margin (the
  conformal margin of :mod:`vmshadow.predict.conformal`, per stratum, from
  held-out P90s made *inside* the training side, so the test fold never tunes
  its own margin);
- the physical extrapolation used when history is thin (for reference);
- the three baselines of DESIGN.md: shadow usage x1.2, usage scaled linearly
  with vCPUs x1.2, and the full VM as provisioned (IOPS only when the
  catalogue gives them);
- a hindsight reference, what run-to-run noise alone costs
  (:mod:`vmshadow.predict.noise`);
- for IOPS, each method's rate as a token bucket replayed against the full
  VM's I/O series (:mod:`vmshadow.predict.ioreplay`), the report's ``replay``.

:func:`evaluate_saved` scores a saved model on other history without
retraining, in the same shape (no folds: every scored pair is a test case),
optionally broken down by the target's family.

Recommendations are compared *before* rounding (need x margin), for every
method alike, so that whole-vCPU and 256 MiB steps do not blur the comparison;
the rounded figures are reported beside. Every method's recommendation is cut
to the target's capacity: a VM cannot use more vCPUs or memory than it has,
so anything above is waste by construction, whoever recommends it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import GroupKFold

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import RESOURCES, Requirement, round_allocation
from vmshadow.predict.conformal import ConformalMargin
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.history import HistoryRecord
from vmshadow.predict.ioreplay import replay_methods
from vmshadow.predict.margin import DEFAULT_MARGIN, DEFAULT_TARGET_UNDER, MarginMode
from vmshadow.predict.metrics import mdape, pinball, rounded, under_and_waste
from vmshadow.predict.models import (
    EPS,
    UPPER,
    ModelSet,
    QuantileModel,
    conformal_margins,
    fit_resources,
    pooled_margin,
)
from vmshadow.predict.noise import run_to_run
from vmshadow.predict.physical import physical_need
from vmshadow.predict.sar import Floats

Pairs = Literal["largest", "all"]
BASELINES = ("shadow", "linear", "full")
LABELS = {
    "model-fixed": "quantile model, P90 x fixed margin",
    "model-calibrated": "quantile model, P90 x calibrated margin",
    "physical": "physical extrapolation x margin (fallback)",
    "shadow": "baseline: shadow usage x1.2",
    "linear": "baseline: usage linear in vCPUs x1.2",
    "full": "baseline: the full VM as provisioned",
}


@dataclass
class _Collected:
    """Per method and resource: the point prediction (before the margin) and the
    recommendation, fold after fold."""

    req: dict[str, list[Floats]] = field(default_factory=lambda: {r: [] for r in RESOURCES})
    point: dict[tuple[str, str], list[Floats]] = field(default_factory=dict)
    rec: dict[tuple[str, str], list[Floats]] = field(default_factory=dict)
    median: dict[str, list[Floats]] = field(default_factory=lambda: {r: [] for r in RESOURCES})
    margins: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in RESOURCES})
    case_margins: dict[str, list[Floats]] = field(
        default_factory=lambda: {r: [] for r in RESOURCES}
    )
    records: list[HistoryRecord] = field(default_factory=list)  # the cases, in order

    def extend(self, other: _Collected) -> None:
        """Append ``other``'s cases after these (pooling several scorings)."""
        for res in RESOURCES:
            self.req[res].extend(other.req[res])
            self.median[res].extend(other.median[res])
            self.case_margins[res].extend(other.case_margins[res])
        for key, parts in other.point.items():
            self.point.setdefault(key, []).extend(parts)
        for key, parts in other.rec.items():
            self.rec.setdefault(key, []).extend(parts)
        for res, ms in other.margins.items():
            self.margins[res].extend(ms)
        self.records.extend(other.records)

    def add(self, method: str, res: str, point: Floats, rec: Floats) -> None:
        self.point.setdefault((method, res), []).append(point)
        self.rec.setdefault((method, res), []).append(rec)

    def cat(self, d: dict[Any, list[Floats]], key: Any) -> Floats:
        parts = d.get(key) or []
        return np.concatenate(parts) if parts else np.zeros(0)


def evaluate(
    data: Dataset,
    *,
    folds: int = 5,
    pairs: Pairs = "largest",
    margin: float = DEFAULT_MARGIN,
    target_under: float = DEFAULT_TARGET_UNDER,
    modes: Sequence[MarginMode] = ("fixed", "calibrated"),
    rescored: Dataset | None = None,
) -> dict[str, Any]:
    """Grouped cross-validation of the model beside the fallback and the baselines.

    ``rescored``: the same records measured otherwise (resampled), in the same
    order; each fold's models and margins also score its test cases there, and
    the report gains ``rescored``, the figures on them."""
    started = time.monotonic()
    if data.jobs < 2:
        raise ConfigError("--history", f"evaluation needs at least two jobs, got {data.jobs}")
    k = min(folds, data.jobs)
    scored = data.largest_targets() if pairs == "largest" else np.ones(len(data), dtype=np.bool_)
    c, c2 = _Collected(), _Collected()
    for tr, te in GroupKFold(n_splits=k).split(data.x, groups=data.groups):
        te = te[scored[te]]
        if te.size == 0:
            continue
        extra = [(rescored.take(te), c2)] if rescored is not None else []
        _fold(data.take(tr), data.take(te), c, margin, target_under, modes, extra)
    common = {
        "pairs": pairs,
        "folds": k,
        "grouped_by": "job",
        "margin": margin,
        "target_under": target_under,
        "compared": "before rounding (need x margin), capped at the target's capacity",
    }
    more: dict[str, Any] = {}
    if rescored is not None:
        more["rescored"] = {
            **_report(rescored, scored, c2, modes, target_under),
            **common,
            "seconds": round(time.monotonic() - started, 1),
        }
    return {
        **more,
        **_report(data, scored, c, modes, target_under),
        "pairs": pairs,
        "folds": k,
        "grouped_by": "job",
        "margin": margin,
        "target_under": target_under,
        "compared": "before rounding (need x margin), capped at the target's capacity",
        "seconds": round(time.monotonic() - started, 1),
    }


def _report(
    data: Dataset,
    scored: NDArray[np.bool_],
    c: _Collected,
    modes: Sequence[MarginMode],
    target_under: float,
) -> dict[str, Any]:
    resources = {res: _summarise(c, res, modes, target_under) for res in RESOURCES}
    cases = data.take(np.flatnonzero(scored))
    for res in RESOURCES:
        resources[res]["hindsight"] = run_to_run(
            cases.records, cases.observed[res], cases.capacity[res], EPS[res], target_under
        )
    # IOPS as a cap: each method's rate made a token bucket and replayed
    # against the full VM's I/O series (None when the series are not at hand).
    # Also the model's median as the rate: with a burst to absorb what is above
    # it, the rate need not cover the P95.
    methods = resources["iops"]["methods"]
    rates = {m: c.cat(c.rec, (m, "iops")) for m, row in methods.items() if row}
    if rates:
        rates["model-median"] = c.cat(c.median, "iops")
    resources["iops"]["replay"] = replay_methods(c.records, rates)
    return {
        "history": {
            "records": len(data),
            "jobs": data.jobs,
            "sources": sorted({r.source for r in data.records}),
        },
        "tested": int(sum(len(v) for v in c.req["vcpus"])),
        "resources": resources,
    }


def evaluate_saved(
    saved: ModelSet,
    data: Dataset,
    *,
    pairs: Pairs = "largest",
    margin: float = DEFAULT_MARGIN,
    target_under: float = DEFAULT_TARGET_UNDER,
    by_family: bool = False,
) -> dict[str, Any]:
    """Score a saved model on ``data`` as it is (no retraining), beside the same
    fallback and baselines as :func:`evaluate`. ``model-fixed`` multiplies the P90
    by ``margin``; ``model-calibrated`` by the margins saved with the model, when
    it was trained with calibrated ones."""
    started = time.monotonic()
    if saved.models is None:
        raise ConfigError(
            "--model",
            "holds no trained model (too little history: it predicts by the physical "
            "extrapolation), nothing to score",
        )
    calibrated = saved.meta.get("margin_mode") == "calibrated" and saved.conformal is not None
    modes: tuple[MarginMode, ...] = ("fixed", "calibrated") if calibrated else ("fixed",)
    scored = data.largest_targets() if pairs == "largest" else np.ones(len(data), dtype=np.bool_)
    if not scored.any():
        raise ConfigError("--history", "no pairs to score")

    def score(part: Dataset, mask: NDArray[np.bool_]) -> dict[str, Any]:
        c = _Collected()
        assert saved.models is not None
        cases = part.take(np.flatnonzero(mask))
        _score(saved.models, saved.conformal or {}, cases, c, margin, modes)
        return _report(part, mask, c, modes, target_under)

    trained_on = sorted(str(s) for s in saved.meta.get("sources", []))
    report = {
        **score(data, scored),
        "pairs": pairs,
        "folds": 0,
        "grouped_by": "none: a saved model, not retrained",
        "margin": margin,
        "target_under": target_under,
        "compared": "before rounding (need x margin), capped at the target's capacity",
        "model": {
            "trained_at": saved.meta.get("trained_at"),
            "history_size": saved.history_size,
            "sources": trained_on,
            "margin_mode": saved.meta.get("margin_mode"),
            "margins": saved.margins,
            # Scoring a model on the history it learnt from says little.
            "seen_sources": sorted(set(trained_on) & {r.source for r in data.records}),
        },
    }
    if by_family:
        families = np.asarray([r.target.family or "-" for r in data.records], dtype=np.str_)
        report["by_family"] = {
            fam: score(data.take(np.flatnonzero(families == fam)), scored[families == fam])
            for fam in sorted(set(families[scored].tolist()))
        }
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def _fold(
    train: Dataset,
    test: Dataset,
    c: _Collected,
    margin: float,
    target_under: float,
    modes: Sequence[MarginMode],
    extra: Sequence[tuple[Dataset, _Collected]] = (),
) -> None:
    """Fit on ``train`` (and calibrate its margins there); score ``test`` into
    ``c``, and each other test set of ``extra`` into its own."""
    models = fit_resources(train)
    calibrated = conformal_margins(train, target_under) if "calibrated" in modes else {}
    for cases, into in ((test, c), *extra):
        _score(models, calibrated, cases, into, margin, modes)


def _score(
    models: dict[str, QuantileModel],
    calibrated: dict[str, ConformalMargin],
    test: Dataset,
    c: _Collected,
    margin: float,
    modes: Sequence[MarginMode],
) -> None:
    """Add each method's recommendation for ``test`` to ``c``."""
    phys = [
        physical_need(
            r.shadow.need,
            shadow_vcpus=r.shadow.size.vcpus,
            shadow_memory_mib=r.shadow.size.memory_mib,
            target_vcpus=r.target.vcpus,
            target_memory_mib=r.target.memory_mib,
        ).need
        for r in test.records
    ]
    c.records.extend(test.records)
    for res in RESOURCES:
        cap = test.capacity[res]
        shadow = test.shadow[res]
        c.req[res].append(test.observed[res])
        c.median[res].append(models[res].predict(test.x, shadow, 0.5, cap))
        p90 = models[res].predict(test.x, shadow, UPPER, cap)
        for mode in modes:
            if mode == "fixed":
                m: Floats | float = margin
            else:
                cm = calibrated[res]
                m = cm.margins(test.x) if cm.reached else pooled_margin(cm)
                c.margins[res].append(pooled_margin(calibrated[res]))
                c.case_margins[res].append(np.broadcast_to(m, p90.shape).astype(np.float64))
            c.add(f"model-{mode}", res, p90, np.minimum(p90 * m, cap))
        ph = np.asarray([float(getattr(n, res)) for n in phys])
        c.add("physical", res, ph, np.minimum(ph * margin, cap))
        c.add("shadow", res, shadow, np.minimum(shadow * DEFAULT_MARGIN, cap))
        linear = shadow * test.vcpu_ratio
        c.add("linear", res, linear, np.minimum(linear * DEFAULT_MARGIN, cap))
        if np.isfinite(cap).all():
            c.add("full", res, cap, cap)


def _rounded(c: _Collected, method: str) -> dict[str, Floats] | None:
    """Each case's recommendation rounded as a Prediction would be (whole vCPUs,
    256 MiB steps, IOPS to the next 10)."""
    recs = {res: c.cat(c.rec, (method, res)) for res in RESOURCES}
    n = len(recs["vcpus"])
    if n == 0 or len(recs["memory_mib"]) != n:
        return None
    iops = recs["iops"] if len(recs["iops"]) == n else np.zeros(n)
    out: dict[str, list[float]] = {res: [] for res in RESOURCES}
    for v, mem, io in zip(recs["vcpus"], recs["memory_mib"], iops, strict=True):
        a = round_allocation(Requirement(float(v), float(mem), float(io)))
        out["vcpus"].append(float(a.vcpus))
        out["memory_mib"].append(float(a.memory_mib))
        out["iops"].append(float(a.iops or 0))
    arrays = {res: np.asarray(v) for res, v in out.items()}
    if len(recs["iops"]) != n:
        del arrays["iops"]
    return arrays


def _summarise(
    c: _Collected, res: str, modes: Sequence[MarginMode], target_under: float
) -> dict[str, Any]:
    req = c.cat(c.req, res)
    methods: dict[str, Any] = {}
    for name in (*(f"model-{m}" for m in modes), "physical", *BASELINES):
        rec = c.cat(c.rec, (name, res))
        if rec.size != req.size or req.size == 0:
            methods[name] = None  # e.g. provisioned IOPS unknown
            continue
        point = c.cat(c.point, (name, res))
        rounded_recs = _rounded(c, name)
        row: dict[str, Any] = {
            "label": LABELS[name],
            **under_and_waste(rec, req),
            "mdape": rounded(
                mdape(c.cat(c.median, res) if name.startswith("model") else point, req)
            ),
            "pinball_p90": rounded(pinball(point, req, UPPER), 3),
        }
        if rounded_recs is not None and res in rounded_recs:
            figures = under_and_waste(rounded_recs[res], req)
            row["rounded_under"], row["rounded_waste"] = figures["under"], figures["waste"]
        if name == "model-calibrated":
            # The mean margin the scored cases got (per stratum), and each
            # fold's pooled margin.
            row["margin"] = rounded(float(np.mean(c.cat(c.case_margins, res))), 3)
            row["margin_per_fold"] = [round(m, 3) for m in c.margins[res]]
        methods[name] = row
    ok = {
        b: methods[b]["waste"]
        for b in BASELINES
        if methods[b] is not None
        and methods[b]["under"] <= target_under
        and methods[b]["waste"] is not None
    }
    cheapest = min(ok, key=lambda b: ok[b]) if ok else None
    verdict = {}
    for m in modes:
        row = methods[f"model-{m}"]
        verdict[m] = bool(
            row is not None
            and cheapest is not None
            and row["under"] <= target_under
            and row["waste"] is not None
            and row["waste"] <= ok[cheapest] / 2
        )
    return {
        "cases": int(req.size),
        "methods": methods,
        "cheapest_baseline": cheapest,
        "cheapest_baseline_waste": ok.get(cheapest) if cheapest else None,
        "target_met": verdict,
    }
