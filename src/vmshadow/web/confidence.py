"""The prediction card's confidence block, from ``prediction.confidence``.

The figures come from ``domain.confidence`` (the same JSON the API and the CLI
show); this only words them for the page. A prediction stored before
intervals existed has none: the card says so and shows no interval column,
rather than a column of dashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmshadow.domain.confidence import (
    RISK_WORDS,
    contention_text,
    coverage_text,
    interval_text,
    risk_text,
)


@dataclass(frozen=True)
class CardConfidence:
    risk: int | None  # 0 very low ... 4 very high; None when not reported
    risk_text: str  # 'Risk 2 of 4 (medium)'
    drivers: list[str]
    intervals: bool  # the prediction recorded intervals (the card shows the column)
    coverage: str  # '90 %', or '—'
    history_count: int | None
    contention: str  # the host contention during the shadow run, in words

    @property
    def severity(self) -> str:
        """The card's colour for the level, as the findings are coloured."""
        if self.risk is None:
            return "info"
        return "fine" if self.risk <= 1 else "change" if self.risk == 2 else "risk"


def card_confidence(conf: Mapping[str, Any] | None) -> CardConfidence | None:
    if not isinstance(conf, Mapping):
        return None
    risk = conf.get("risk")
    level = risk if isinstance(risk, int) and 0 <= risk < len(RISK_WORDS) else None
    history = conf.get("history_count")
    text = risk_text(conf)
    return CardConfidence(
        risk=level,
        risk_text=text[:1].upper() + text[1:],
        drivers=[str(d) for d in conf.get("drivers") or []],
        intervals=isinstance(conf.get("intervals"), Mapping),
        coverage=coverage_text(conf),
        history_count=history if isinstance(history, int) else None,
        contention=contention_text(conf),
    )


def row_interval(conf: Mapping[str, Any] | None, key: str, unit: str) -> str:
    """'1.2-1.8 vCPU', or '—' for a resource without an interval."""
    text = interval_text(conf, key)
    return text if text == "—" else f"{text} {unit}"
