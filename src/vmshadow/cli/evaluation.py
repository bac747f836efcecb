"""How ``vmshadow model evaluate`` shows its report: one table per resource,
the model beside the baselines, with the target each must meet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

UNITS = {"vcpus": "vCPU", "memory_mib": "memory", "iops": "IOPS"}


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.1%}"


def _method_name(name: str, m: dict[str, Any], margin: float) -> str:
    short = {
        "model-fixed": f"model, P90 x{margin:g}",
        "model-calibrated": f"model, P90 x{m.get('margin', 0):g} calibrated",
        "model-median": "model, median, no margin",
        "physical": f"physical fallback x{margin:g}",
        "shadow": "shadow usage x1.2",
        "linear": "linear in vCPUs x1.2",
        "full": "full VM as provisioned",
    }
    return short.get(name, name)


def _hindsight_line(h: dict[str, Any]) -> str:
    """What run-to-run noise alone costs (vmshadow.predict.noise), in one line."""
    spread = (
        f"runs of one job, input and size differ by median {h['spread_median']:g}x "
        f"(P90 {h['spread_p90']:g}x, max {h['spread_max']:g}x); "
        if h["groups_with_repeats"]
        else ""
    )
    return (
        f"  [dim]hindsight: {spread}told each group's typical need, one margin "
        f"x{h['margin']:g} gives {_pct(h['under'])} under / {_pct(h['waste'])} waste[/]"
    )


def print_evaluation(out: Console, report: dict[str, Any], read: str) -> None:
    """Per resource, the model beside the baselines, and whether it met its target."""
    out.print(f"[dim]{escape(read)}[/]")
    model = report.get("model")
    if model is not None:
        out.print(
            escape(
                f"saved model from {model.get('directory')}, trained {model['trained_at']} on "
                f"{model['history_size']} records of {', '.join(model['sources']) or '-'}"
            )
        )
        if model["seen_sources"]:
            out.print(
                "[yellow]it was trained on some of this history ("
                + escape(", ".join(model["seen_sources"]))
                + "): these figures are not held out[/]"
            )
    how = (
        f"{report['folds']} folds grouped by {report.get('grouped_by', 'job')}"
        if report["folds"]
        else "saved model, not retrained"
    )
    goal = report["target_under"]
    for res, r in report["resources"].items():
        t = Table(title=f"{UNITS[res]}: {r['cases']} cases, {how}", title_justify="left")
        t.add_column("method", no_wrap=True)
        t.add_column("under", justify="right")
        t.add_column("waste", justify="right")
        t.add_column("rounded", justify="right", no_wrap=True)
        t.add_column("MdAPE", justify="right")
        t.add_column("pinball", justify="right")
        for name, m in r["methods"].items():
            if m is None:
                t.add_row(_method_name(name, {}, report["margin"]), "n/a", "n/a", "", "", "")
                continue
            under = _pct(m["under"])
            if m["under"] is not None and m["under"] > goal:
                under = f"[red]{under}[/]"
            t.add_row(
                _method_name(name, m, report["margin"]),
                under,
                _pct(m["waste"]),
                f"{_pct(m.get('rounded_under'))} / {_pct(m.get('rounded_waste'))}",
                _pct(m["mdape"]),
                f"{m['pinball_p90']:.3g}" if m["pinball_p90"] is not None else "-",
            )
        out.print(t)
        cheapest = r["cheapest_baseline"]
        need = (
            f"<= {goal:.0%} under, waste <= {r['cheapest_baseline_waste'] / 2:.1%} "
            f"(half of {cheapest})"
            if cheapest
            else f"no baseline stays at or under {goal:.0%}"
        )
        verdicts = ", ".join(
            f"{mode} {'[green]met[/]' if ok else '[red]not met[/]'}"
            for mode, ok in r["target_met"].items()
        )
        out.print(f"  target ({need}): {verdicts}")
        out.print(_hindsight_line(r["hindsight"]))
        if r.get("replay"):
            print_replay(out, r["replay"], r["methods"], report["margin"])
    out.print(
        "[dim]under: share of cases under-provisioned; waste: mean (rec - req) / rec where "
        "not under; rounded: the same after rounding (whole vCPUs, 256 MiB, 10 IOPS); MdAPE of "
        "the median, pinball loss of the P90 (before the margin)[/]"
    )
    out.print(
        f"{report['tested']} cases scored ({report['pairs']} pairs), "
        f"{report['history']['records']} records from {report['history']['jobs']} jobs; "
        f"compared {report['compared']}"
    )
    out.print(
        f"evaluation took {report['seconds']} s (+ {report['seconds_reading']} s reading history)"
    )


def print_replay(out: Console, rp: dict[str, Any], rows: dict[str, Any], margin: float) -> None:
    """IOPS as a cap: each method's token bucket replayed against the full VM's
    I/O series (vmshadow.predict.ioreplay)."""
    goal = rp["goal"]
    t = Table(
        title=f"IOPS as a cap (rate, burst, length), replayed on {rp['cases']} full-VM series",
        title_justify="left",
    )
    t.add_column("method", no_wrap=True)
    t.add_column(f"cases > {goal['waited_over']:.0%} waited", justify="right")
    t.add_column("rate unused", justify="right")
    t.add_column("I/Os waited", justify="right")
    t.add_column("burst / length", justify="right", no_wrap=True)
    for name, m in rp["methods"].items():
        over = _pct(m["cases_over_1pct"])
        if m["cases_over_1pct"] > goal["cases_over_1pct_max"]:
            over = f"[red]{over}[/]"
        t.add_row(
            _method_name(name, rows.get(name) or {}, margin),
            over,
            _pct(m["unused"]),
            _pct(m["waited_mean"]),
            f"x{m['burst_ratio_median']:g} / {m['burst_s_median']:g} s",
        )
    out.print(t)
    unused = goal["unused_max"]
    verdicts = ", ".join(
        f"{name.removeprefix('model-')} {'[green]met[/]' if ok else '[red]not met[/]'}"
        for name, ok in rp["target_met"].items()
    )
    out.print(
        f"  target (<= {goal['cases_over_1pct_max']:.0%} of cases over "
        f"{goal['waited_over']:.0%} waited, unused <= {_pct(unused)}, half of "
        f"{goal['reference']}): {verdicts}"
    )
    extra = f"; {rp['cases_without_series']} cases without series" * bool(
        rp["cases_without_series"]
    )
    out.print(f"  [dim]{escape(rp['rule'])}; medians of burst/rate and length{extra}[/]")


def print_by_family(out: Console, report: dict[str, Any]) -> None:
    """The saved model's figures per family of the target type (``--by family``)."""
    families = report.get("by_family")
    if not families:
        return
    t = Table(title="model per family of the target", title_justify="left")
    t.add_column("family")
    t.add_column("cases", justify="right")
    for res in UNITS.values():
        t.add_column(f"{res} under / waste", justify="right")
    for fam, r in families.items():
        cells = []
        for res in UNITS:
            m = r["resources"][res]["methods"].get("model-fixed")
            cells.append("-" if m is None else f"{_pct(m['under'])} / {_pct(m['waste'])}")
        t.add_row(escape(fam), str(r["tested"]), *cells)
    out.print(t)
    out.print(f"[dim]per family: the model's P90 x{report['margin']:g} (fixed margin)[/]")


def evaluate_protocol(
    protocol: str,
    data: Any,
    *,
    history: Path | None,
    catalog: Path | None,
    **kw: Any,
) -> dict[str, Any]:
    """``model evaluate --protocol``: ``lofo`` (leave one family out) or
    ``resample5`` (the history in the Lumos layout, resampled to 5 s);
    ``grouped`` is the default evaluation and is run by the caller."""
    from vmshadow.domain.errors import ConfigError
    from vmshadow.predict.dataset import Dataset
    from vmshadow.predict.ood import evaluate_lofo, evaluate_resampled, import_resampled
    from vmshadow.predict.vmtypes import read_catalog

    if protocol == "lofo":
        kw.pop("folds", None)
        return evaluate_lofo(data, **kw)
    if protocol != "resample5":
        raise ConfigError("--protocol", f"unknown protocol {protocol!r}")
    if history is None or not history.is_dir():
        raise ConfigError(
            "--protocol", "resample5 reads a folder in the Lumos layout (--history DIR)"
        )
    cat = read_catalog(catalog or history / "vm-types.csv")
    resampled = Dataset.of(import_resampled(history, cat).records)
    return evaluate_resampled(data, resampled, **kw)


def print_protocol(out: Console, report: dict[str, Any], read: str) -> None:
    """The out-of-distribution protocols' reports, one evaluation table set each."""
    if report["protocol"] == "lofo":
        parts = {
            **{f"held-out family {fam}": r for fam, r in report["by_family"].items()},
            "all held-out families": report["overall"],
        }
    else:
        step = f"{report['step_s']:g} s"
        parts = {
            f"trained at 1 s, scored at {step}": report["trained_1s"],
            f"trained and scored at {step}": report["trained_resampled"],
        }
    for title, r in parts.items():
        out.rule(escape(title))
        print_evaluation(out, {**r, "seconds_reading": report.get("seconds_reading", 0)}, read)
    out.print(f"protocol {report['protocol']} took {report['seconds']} s")
