"""Operators' own history: sysstat's binary daily files (``sa``), read through
``sadf -j``, paired by a manifest.

The manifest is a CSV file, one row per recorded run::

    job,input,vm_type,run,file
    spark_wordcount,small,m5.large,1,runs/wc-small-large-1.sa
    spark_wordcount,small,m5.2xlarge,1,runs/wc-small-2xlarge-1.sa

``job``, ``vm_type`` and ``file`` are required; ``input`` (the input size, so
that one job at several sizes stays one job in evaluation folds) and ``run``
are optional; ``file`` is relative to the manifest's folder. The file should
cover the job's run and nothing else (``sadc 1 N file`` started with the job,
or ``sadf``'s own ``-s``/``-e`` cut beforehand). Runs are paired as in the
Lumos layout (:mod:`vmshadow.predict.history`): each job+input's runs on a
family's smallest type play the shadow, paired with every run of it on the
family's larger types; families and sizes come from the catalogue.

From ``sadf -j FILE -- -u -r -b -w -B`` per sample: CPU busy (100 - idle -
iowait, of all CPUs), memory used (``memused``: sysstat 12 computes it net of
buffers, page cache and slab, unlike the older sar of the Lumos files), I/O
requests and 512-byte blocks per second of all devices, processes started
(``proc``/s) and page faults (``fault``/s). Times are the samples' own, and
sadf says each sample's interval.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.history import (
    ImportResult,
    Run,
    RunKey,
    content_digest,
    pair_runs,
    source_id,
)
from vmshadow.predict.sar import SECTOR_BYTES, SarError, UsageSeries, monotonic_times
from vmshadow.predict.vmtypes import Catalog

SADF_ARGS = ("-u", "-r", "-b", "-w", "-B")
SADF_TIMEOUT_S = 60.0
REQUIRED = ("job", "vm_type", "file")


def sadf_json(path: Path) -> dict[str, Any]:
    """``sadf -j`` of one file, parsed; SarError naming the file when sadf is
    missing, refuses the file (another sysstat version's format) or is slow."""
    sadf = shutil.which("sadf")
    if sadf is None:
        raise SarError(str(path), "sadf not found: install sysstat to read sa files")
    argv = [sadf, "-j", str(path), "--", *SADF_ARGS]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=SADF_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SarError(str(path), f"sadf took over {SADF_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise SarError(str(path), f"cannot run sadf: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise SarError(str(path), f"sadf refused it: {why[0] if why else done.returncode}")
    try:
        doc = json.loads(done.stdout)
    except ValueError as exc:
        raise SarError(str(path), f"sadf printed no JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SarError(str(path), "sadf printed no JSON object")
    return doc


def _sample(st: dict[str, Any]) -> tuple[float, float, list[float]]:
    """(time, interval, [idle, iowait, memused, tps, rtps, wtps, bread, bwrtn,
    proc, fault]) of one sadf statistics entry; KeyError/TypeError/ValueError
    when an activity is missing."""
    ts = st["timestamp"]
    at = datetime.fromisoformat(f"{ts['date']}T{ts['time']}").timestamp()
    cpu = next(c for c in st["cpu-load"] if c.get("cpu") == "all")
    io = st["io"]
    return (
        at,
        float(ts["interval"]),
        [
            float(cpu["idle"]),
            float(cpu["iowait"]),
            float(st["memory"]["memused"]),
            float(io["tps"]),
            float(io["io-reads"]["rtps"]),
            float(io["io-writes"]["wtps"]),
            float(io["io-reads"]["bread"]),
            float(io["io-writes"]["bwrtn"]),
            float(st["process-and-context-switch"]["proc"]),
            float(st["paging"]["fault"]),
        ],
    )


def read_sysstat(path: Path, vcpus: int) -> UsageSeries:
    """One run from a sysstat file; SarError naming the file and the reason."""
    doc = sadf_json(path)
    try:
        host = doc["sysstat"]["hosts"][0]
        stats = host["statistics"]
        cpus = int(host["number-of-cpus"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SarError(str(path), f"no statistics in sadf's output ({exc!r})") from exc
    if cpus != vcpus:
        raise SarError(str(path), f"recorded on {cpus} CPUs, its VM type has {vcpus} vCPUs")
    times: list[float] = []
    steps: list[float] = []
    values: list[list[float]] = []
    for st in stats:
        try:
            at, step, vals = _sample(st)
        except StopIteration:
            raise SarError(str(path), "no all-CPU figures (record with sadc's defaults)") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SarError(
                str(path), f"activity {exc} missing: record with sadc's defaults"
            ) from None
        times.append(at)
        steps.append(step)
        values.append(vals)
    t, kept = monotonic_times(times)
    if len(kept) < 2:
        raise SarError(str(path), f"fewer than 2 readable samples ({len(kept)})")
    a = np.asarray([values[i] for i in kept], dtype=np.float64)
    idle, iowait, used, tps, rtps, wtps, bread, bwrtn, proc, fault = a.T
    return UsageSeries(
        vcpus=vcpus,
        t=t,
        busy_vcpus=np.clip((100.0 - idle - iowait) / 100.0, 0.0, 1.0) * vcpus,
        mem_used_mib=np.maximum(used, 0.0) / 1024.0,
        read_iops=rtps,
        write_iops=wtps,
        iops=tps,
        read_bps=bread * SECTOR_BYTES,
        write_bps=bwrtn * SECTOR_BYTES,
        forks=proc,
        faults=fault,
        step_s=float(np.median([steps[i] for i in kept])),
    )


def read_manifest(manifest: Path, option: str) -> list[dict[str, str]]:
    """The manifest's rows; ConfigError naming ``option`` with the line and the
    field when it cannot be used."""
    try:
        with manifest.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError(option, f"cannot read {manifest}: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(option, f"{manifest} is not a CSV file: {exc}") from exc
    if not rows:
        raise ConfigError(option, f"{manifest} lists no runs (header: job,input,vm_type,run,file)")
    for i, row in enumerate(rows, start=2):
        for col in REQUIRED:
            if not (row.get(col) or "").strip():
                raise ConfigError(option, f"{manifest} line {i}: {col!r} is empty or missing")
    return rows


def import_sysstat_history(
    manifest: Path,
    catalog: Catalog,
    *,
    option: str = "--history",
    source: str | None = None,
) -> ImportResult:
    """Read every run the manifest lists and pair shadows with full VMs."""
    if not manifest.is_file():
        raise ConfigError(option, f"{manifest} is not a file (a manifest, see docs/prediction.md)")
    base = manifest.parent
    res = ImportResult()
    runs: dict[RunKey, list[Run]] = defaultdict(list)
    read = [manifest]
    for row in read_manifest(manifest, option):
        vm_name, job = row["vm_type"].strip(), row["job"].strip()
        inp = (row.get("input") or "").strip() or "-"
        file = base / row["file"].strip()
        key = f"{vm_name}/{job}_{inp}_{(row.get('run') or '').strip() or file.name}"
        vm = catalog.get(vm_name)
        if vm is None:
            if vm_name not in res.unknown_types:
                res.unknown_types.append(vm_name)
            continue
        res.runs += 1
        read.append(file)
        try:
            series = read_sysstat(file, vm.vcpus)
        except SarError as exc:
            res.unreadable[key] = exc.reason
            continue
        if not math.isfinite(series.seconds):
            res.unreadable[key] = "no duration"
            continue
        runs[(vm.name, job, inp)].append(Run(key, series, series.requirement()))
    res.source = source_id("sysstat", manifest, content_digest(base, read, catalog), source)
    pair_runs(res, runs, catalog)
    if not res.records:
        raise ConfigError(
            option,
            f"no usable shadow/full-VM pairs in {manifest} ({res.runs} runs, "
            f"{len(res.unreadable)} unreadable: "
            + "; ".join(f"{k}: {v}" for k, v in list(res.unreadable.items())[:3])
            + ")",
        )
    return res
