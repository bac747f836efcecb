"""Predictor cost against history size: training (fixed and calibrated
margins) and grouped cross-validation, on growing subsets of one history.

The history is read once (sar runs laid out like ``lumos-aws``; the README of
``../shared/data`` describes it), then subsets of whole jobs are drawn with a
fixed seed (a job is never split: evaluation folds are grouped by job), and
for each: ``train`` with the fixed margin, ``train`` with the calibrated
margin (which adds grouped held-out fits), and ``evaluate`` (5 folds, fixed
margin, the three baselines beside) -- the same functions ``vmshadow model
train`` and ``vmshadow model evaluate`` call. Baseline, measured in the same
run: reading and pairing the same history (the cost before any model).

Default history: ``../shared/data/lumos-aws`` beside the repository when it is
there, else the small subset the repository ships in ``tests/data/lumos-mini``.

    .venv/bin/python bench/predictor.py [--history DIR] [--fractions 0.125,0.25,0.5,1]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from benchlib import REPO, Machine, r, report, table
from vmshadow.predict.dataset import Dataset
from vmshadow.predict.evaluate import evaluate
from vmshadow.predict.history import import_sar_history
from vmshadow.predict.models import train
from vmshadow.predict.vmtypes import read_catalog

SHARED = REPO.parent / "shared" / "data" / "lumos-aws"
VENDORED = REPO / "tests" / "data" / "lumos-mini"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--history", type=Path, default=SHARED if SHARED.is_dir() else VENDORED)
    ap.add_argument("--fractions", default="0.125,0.25,0.5,1", help="shares of the jobs")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fractions 0.5 and 1")
    args = ap.parse_args()
    fractions = [0.5, 1.0] if args.quick else [float(x) for x in args.fractions.split(",")]
    machine = Machine()
    t0 = time.monotonic()
    res = import_sar_history(args.history, read_catalog(args.history / "vm-types.csv"))
    read_all_s = time.monotonic() - t0
    jobs = sorted({rec.job for rec in res.records})
    random.Random(6).shuffle(jobs)
    print(
        f"{args.history}: {len(res.records)} records from {len(jobs)} jobs "
        f"({res.runs} runs) read and paired in {read_all_s:.1f} s"
    )
    rows: list[dict[str, Any]] = []
    # One OpenMP thread, as the service does (see pyproject's threadpoolctl note).
    with threadpool_limits(1):
        sizes = sorted({max(2, round(share * len(jobs))) for share in fractions})
        for size in sizes:
            chosen = set(jobs[:size])
            records = [rec for rec in res.records if rec.job in chosen]
            data = Dataset.of(records)
            t = time.monotonic()
            fixed = train(data, margin_mode="fixed")
            t_fixed = time.monotonic() - t
            t = time.monotonic()
            train(data, margin_mode="calibrated")
            t_cal = time.monotonic() - t
            t = time.monotonic()
            ev = evaluate(data, folds=args.folds, modes=("fixed",))
            t_eval = time.monotonic() - t
            rows.append(
                {
                    "jobs": len(chosen),
                    "records": len(records),
                    "method": fixed.method,
                    # Reading is timed once for all; its share here is pro rata.
                    "read_s (baseline)": r(read_all_s * len(records) / len(res.records), 1),
                    "train_fixed_s": r(t_fixed, 1),
                    "train_calibrated_s": r(t_cal, 1),
                    "evaluate_s": r(t_eval, 1),
                    "evaluated_cases": ev["tested"],
                    "vcpu_under_model": r(
                        ev["resources"]["vcpus"]["methods"]["model-fixed"]["under"], 3
                    ),
                }
            )
            print(
                f"  {len(chosen)} jobs, {len(records)} records: train {t_fixed:.1f} s "
                f"(calibrated {t_cal:.1f} s), evaluate {t_eval:.1f} s",
                flush=True,
            )
    table(
        rows,
        [
            "jobs",
            "records",
            "method",
            "read_s (baseline)",
            "train_fixed_s",
            "train_calibrated_s",
            "evaluate_s",
            "evaluated_cases",
        ],
    )
    report(
        "predictor",
        machine,
        {"history": str(args.history), "fractions": fractions, "folds": args.folds},
        {"read_all_s": r(read_all_s, 1), "subsets": rows},
    )


if __name__ == "__main__":
    main()
