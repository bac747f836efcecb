"""How sure a prediction is: its intervals, a 0-4 risk level and what drives it.

Every prediction carries, per resource, the range its need may take before
the margin (``detail["interval"]``, with the share of cases it is meant to
cover, ``detail["interval_coverage"]``), the history behind it
(``detail["history_count"]``, else ``Prediction.history_size``) and the host
contention its shadow saw (``detail["contention"]``). From these,
:func:`confidence_of` rates the risk that the *recommended* allocation falls
short, in the spirit of AWS Compute Optimizer's performance risk: 0 very low,
1 low, 2 medium, 3 high, 4 very high.

The level is a count of points, one per rule that holds, capped at 4; each
rule that holds adds a short phrase to ``drivers``. A rule only ever adds, so
worse inputs never lower the level:

1. **No headroom**: for some resource, the recommendation (after the margin
   and the rounding) is below the interval's upper bound; where no interval
   was recorded, below the need itself. The workload may well ask for more
   than it is given.
2. **Wide or unknown spread**: some resource's interval spans more than
   ``WIDE`` (half) of its need, or no interval was recorded at all: the
   prediction cannot say how far off it may be.
3. **Host contention**: the shadow waited for the host's CPU (or was stolen
   from) at or over the contention limit in some phase; its CPU figures may
   under-state the need (``domain.contention``).
4. **No history**: nothing the project has seen stands behind the answer; it
   rests on the shadow's measurements and a physical model alone.
5. **Far extrapolation**: the expected load is at least ``FAR`` (twice) the
   highest load a ramp step measured.
6. **Cut to the requested size**: the recommendation was capped at the size
   asked for (``detail["capped_at_request"]``): the need is near what the VM
   has, where a VM cannot show that it would use more.

No rule looks at a profile's or a VM type's name: the figures alone decide.

    >>> from vmshadow.domain.allocation import Allocation
    >>> from vmshadow.domain.prediction import Prediction, Requirement
    >>> p = Prediction("ramp-extrapolation", "ramp", 0, 1.2, Requirement(1.5, 600, 0),
    ...                Allocation(2, 768), {"interval": {"vcpus": [1.2, 1.8],
    ...                "memory_mib": [550, 700]}, "interval_coverage": 0.9})
    >>> c = confidence_of(p)
    >>> c.risk, c.drivers
    (1, ('no history behind the answer',))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vmshadow.domain.prediction import RESOURCES, Prediction

RISK_WORDS = ("very low", "low", "medium", "high", "very high")
MAX_RISK = len(RISK_WORDS) - 1
WIDE = 0.5  # an interval wider than half its need: the prediction is unsure by that much
FAR = 2.0  # an expected load at least twice the highest one measured
NO_INTERVAL = "no interval recorded"
NO_HISTORY = "no history behind the answer"
UNITS = {"vcpus": "vCPU", "memory_mib": "MiB", "iops": "IOPS"}
NAMES = {"vcpus": "vCPU", "memory_mib": "memory", "iops": "IOPS"}

Interval = tuple[float, float]


@dataclass(frozen=True)
class Confidence:
    """What a prediction's reader needs to judge it (``as_dict`` is the API's shape)."""

    intervals: Mapping[str, Interval | None] | None  # None: the prediction recorded none
    coverage: float | None  # the share of cases the intervals are meant to cover
    risk: int  # 0 very low ... 4 very high
    drivers: tuple[str, ...]  # what raised the risk, in the order of the rules
    history_count: int
    contention: Mapping[str, object] | None  # as ``contention_detail`` gives it; None: unmeasured

    @property
    def risk_word(self) -> str:
        return RISK_WORDS[self.risk]

    def as_dict(self) -> dict[str, object]:
        return {
            "risk": self.risk,
            "risk_level": self.risk_word,
            "drivers": list(self.drivers),
            "intervals": None
            if self.intervals is None
            else {r: None if v is None else list(v) for r, v in self.intervals.items()},
            "coverage": self.coverage,
            "history_count": self.history_count,
            "contention": None if self.contention is None else dict(self.contention),
        }


def confidence_of(prediction: Prediction, *, load: float | None = None) -> Confidence:
    """The prediction's confidence by the rules of this module's docstring.

    ``load``: the expected load, for predictions whose ``detail`` does not
    record it (the ramp's did not); without either, rule 5 cannot apply.
    """
    detail = prediction.detail
    intervals = _intervals(detail.get("interval"))
    history = detail.get("history_count")
    history_count = (
        history
        if isinstance(history, int) and not isinstance(history, bool)
        else prediction.history_size
    )
    contention = detail.get("contention")
    contention = contention if isinstance(contention, Mapping) else None
    drivers = [
        *_headroom(prediction, intervals),
        *_spread(prediction, intervals),
        *_contended(contention),
        *([NO_HISTORY] if history_count <= 0 else []),
        *_extrapolated(detail, load),
        *_capped(detail),
    ]
    return Confidence(
        intervals=intervals,
        coverage=_num(detail.get("interval_coverage")) if intervals is not None else None,
        risk=min(MAX_RISK, len(drivers)),
        drivers=tuple(drivers),
        history_count=history_count,
        contention=contention,
    )


def _num(v: object) -> float | None:
    """``v`` as a finite float, or None when it is no number (a bool is none)."""
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _intervals(raw: object) -> dict[str, Interval | None] | None:
    """Per resource (lo, hi); a resource without a well-formed pair has None."""
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, Interval | None] = {}
    for res in RESOURCES:
        pair = raw.get(res)
        out[res] = _pair(pair)
    return out


def _pair(raw: object) -> Interval | None:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 2:
        return None
    lo, hi = _num(raw[0]), _num(raw[1])
    return (lo, hi) if lo is not None and hi is not None and lo <= hi else None


def _figure(v: float, res: str) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if res == "vcpus" else f"{v:.0f}"


def _headroom(p: Prediction, intervals: Mapping[str, Interval | None] | None) -> list[str]:
    """Rule 1: one driver naming every resource given less than its upper end."""
    short = []
    for res in RESOURCES:
        rec = getattr(p.recommended, res)
        if rec is None:  # no IOPS cap: nothing to run short of
            continue
        pair = intervals.get(res) if intervals is not None else None
        if pair is not None and rec < pair[1]:
            short.append(f"{NAMES[res]} {rec} < {_figure(pair[1], res)}")
        elif intervals is None and rec < float(getattr(p.need, res)):
            short.append(f"{NAMES[res]} {rec} < {_figure(float(getattr(p.need, res)), res)}")
    if not short:
        return []
    what = "the interval's upper bound" if intervals is not None else "the predicted need"
    return [f"recommendation below {what} ({', '.join(short)})"]


def _spread(p: Prediction, intervals: Mapping[str, Interval | None] | None) -> list[str]:
    """Rule 2: no interval at all, or one wider than ``WIDE`` of its need."""
    if intervals is None:
        return [NO_INTERVAL]
    wide = []
    for res in RESOURCES:
        pair, need = intervals.get(res), float(getattr(p.need, res))
        if pair is not None and need > 0 and pair[1] - pair[0] > WIDE * need:
            wide.append(f"{NAMES[res]} ±{(pair[1] - pair[0]) / need * 50:.0f} %")
    return [f"wide interval around the need ({', '.join(wide)})"] if wide else []


def contention_figure(contention: Mapping[str, object] | None) -> float | None:
    """The worst of the vCPU wait and the host steal reported (a fraction)."""
    if contention is None:
        return None
    seen = [v for k in ("max_wait", "max_steal") if (v := _num(contention.get(k))) is not None]
    return max(seen) if seen else None


def _contended(contention: Mapping[str, object] | None) -> list[str]:
    """Rule 3: some phase at or over the limit."""
    if contention is None:
        return []
    worst = contention_figure(contention)
    limit = _num(contention.get("limit"))
    over = bool(contention.get("contended_phases")) or (
        worst is not None and limit is not None and worst >= limit
    )
    if not over:
        return []
    amount = f" {worst * 100:.0f} %" if worst is not None else ""
    return [f"host contention{amount} during the shadow run"]


def _extrapolated(detail: Mapping[str, object], load: float | None) -> list[str]:
    """Rule 5: the expected load at least ``FAR`` times the highest ramp step."""
    steps = detail.get("ramp")
    target = _num(detail.get("load"))
    target = load if target is None else target
    if not isinstance(steps, list) or target is None:
        return []
    loads = [v for s in steps if isinstance(s, Mapping) and (v := _num(s.get("load"))) is not None]
    top = max(loads, default=0.0)
    if top <= 0 or target < FAR * top:
        return []
    beyond = target / top
    if len(loads) == 1:
        return [f"one ramp step: extrapolated x{beyond:.1f} beyond it"]
    return [f"{len(loads)} ramp steps: extrapolated x{beyond:.1f} beyond the highest"]


def _capped(detail: Mapping[str, object]) -> list[str]:
    """Rule 6: the recommendation was cut to the requested size."""
    capped = detail.get("capped_at_request")
    if not isinstance(capped, list) or not capped:
        return []
    names = ", ".join(NAMES.get(str(r), str(r)) for r in capped)
    return [f"{names} need near the requested size: the recommendation was cut to it"]


# -- words for the views (the CLI and the web card read the API's JSON) ------------------
def risk_text(conf: Mapping[str, object]) -> str:
    """'risk 2 of 4 (medium)'."""
    risk = conf.get("risk")
    if not isinstance(risk, int) or isinstance(risk, bool) or not 0 <= risk <= MAX_RISK:
        return "risk not reported"
    return f"risk {risk} of {MAX_RISK} ({RISK_WORDS[risk]})"


def interval_text(conf: Mapping[str, object] | None, res: str) -> str:
    """'1.2-1.8' (vCPU to two decimals, the others whole), or '—' when none was recorded."""
    intervals = (conf or {}).get("intervals")
    pair = _pair(intervals.get(res)) if isinstance(intervals, Mapping) else None
    if pair is None:
        return "—"
    return f"{_figure(pair[0], res)}-{_figure(pair[1], res)}"


def coverage_text(conf: Mapping[str, object] | None) -> str:
    """'90 %' or '—'."""
    cov = _num((conf or {}).get("coverage"))
    return "—" if cov is None else f"{cov * 100:.0f} %"


def contention_text(conf: Mapping[str, object] | None) -> str:
    """The host contention during the shadow run, in words: 'vCPU wait 18 %,
    host steal 2 % (limit 10 %), over it in s1-cpu'."""
    raw = (conf or {}).get("contention")
    contention = raw if isinstance(raw, Mapping) else {}
    parts = [
        f"{name} {v * 100:.0f} %"
        for name, key in (("vCPU wait", "max_wait"), ("host steal", "max_steal"))
        if (v := _num(contention.get(key))) is not None
    ]
    if not parts:
        return "not measured"
    limit = _num(contention.get("limit"))
    phases = contention.get("contended_phases")
    text = ", ".join(parts) + ("" if limit is None else f" (limit {limit * 100:.0f} %)")
    if isinstance(phases, list) and phases:
        text += f", over it in {', '.join(map(str, phases))}"
    return text


__all__ = [
    "FAR",
    "NO_HISTORY",
    "NO_INTERVAL",
    "RISK_WORDS",
    "WIDE",
    "Confidence",
    "confidence_of",
    "contention_text",
    "coverage_text",
    "interval_text",
    "risk_text",
]
