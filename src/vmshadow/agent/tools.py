"""Command lines for stress-ng and fio, and parsers for what they (and an app) report.

argv is built only from a validated ``PhaseSpec`` (allow-listed words and
range-checked integers) plus paths the agent chose itself (the scratch device
given on its command line, its own temporary files). It is always a list run
without a shell.

Observed with stress-ng 0.15.06 and fio 3.33 (Debian 12):

- stress-ng writes ``--metrics-brief`` to stderr, not stdout; the ``--yaml``
  file is the stable source (the brief table is the fallback). In the YAML,
  ``bogo-ops-per-second-usr-sys-time`` divides by CPU time summed over all
  workers, so with N busy workers it is about 1/N of the real-time rate.
- fio prints notes such as "note: both iodepth >= 1 and synchronous I/O
  engine are selected" on stdout *before* the JSON, so we ask for the JSON in
  a file (``--output``) and still parse it leniently. fio creates missing
  parent directories of ``--filename`` and may exit 0 with a per-job
  ``error``; both are checked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TypeAlias

from vmshadow.agent.appspec import AppParams
from vmshadow.agent.phasespec import FioParams, StressNgParams

Metrics: TypeAlias = dict[str, float | int | str | bool | None]


class ToolOutputError(Exception):
    """A tool ran but its report could not be read."""


# A rate-limited CPU load in short, even slices. stress-ng's defaults (every
# method in turn, a random busy slice of 0-0.5 s, each at least one method
# call) came out under TCG as bursts of 1-2 s busy and 3-4 s idle at a 25 %
# load: the 1 s samples swung 0.02-0.5 vCPU, the mean never settled within a
# phase, and a burst more or less moved it by a third. 50 ms slices of a
# light integer method give several busy/idle cycles in every sample, as the
# many short requests of a served load do; the busy share is the same.
CPU_METHOD = "int64"
CPU_LOAD_SLICE_MS = 50


def stress_ng_argv(
    params: StressNgParams, duration_s: int, yaml_path: str, exe: str = "stress-ng"
) -> list[str]:
    argv = [exe, f"--{params.stressor}", str(params.workers)]
    if params.stressor == "cpu":
        argv += ["--cpu-method", CPU_METHOD]
    if params.cpu_load is not None:
        argv += ["--cpu-load", str(params.cpu_load)]
        argv += ["--cpu-load-slice", str(CPU_LOAD_SLICE_MS)]
    if params.stressor == "vm" and params.vm_bytes_mib is not None:
        argv += ["--vm-bytes", f"{params.vm_bytes_mib}M"]
        if params.vm_keep:
            argv.append("--vm-keep")
    argv += ["--timeout", f"{duration_s}s", "--metrics-brief", "--yaml", yaml_path]
    return argv


def fio_argv(
    params: FioParams, duration_s: int, scratch: str, json_path: str, exe: str = "fio"
) -> list[str]:
    argv = [
        exe,
        "--name=vmshadow",
        f"--filename={scratch}",
        f"--rw={params.rw}",
        f"--bs={params.bs_kib}k",
        f"--iodepth={params.iodepth}",
        f"--size={params.size_mib}M",
        f"--ioengine={params.ioengine}",
        f"--direct={int(params.direct)}",
        "--time_based",
        f"--runtime={duration_s}",
        "--percentile_list=50:95:99",
        "--eta=never",
        "--output-format=json",
        f"--output={json_path}",
    ]
    if params.fsync:
        argv.append(f"--fsync={params.fsync}")
    if params.numjobs != 1:
        # One report for all copies, so the result stays "the job's" figures.
        argv += [f"--numjobs={params.numjobs}", "--group_reporting"]
    if params.rwmixread is not None:
        argv.append(f"--rwmixread={params.rwmixread}")
    if params.rate_iops is not None:
        # One value caps reads and writes each; Poisson arrivals look like real
        # clients. Not with fsync: twice in oltp's busiest step (randrw, 8k,
        # fsync=1) fio 3.33's job died of SIGFPE and fio of a double free; its
        # Poisson pacing divides by the direction's integer rate (likely zero).
        argv.append(f"--rate_iops={params.rate_iops}")
        if not params.fsync:
            argv.append("--rate_process=poisson")
    return argv


# -- stress-ng -------------------------------------------------------------------------

_YAML_KEY = re.compile(r"^(\s*)(-\s+)?([A-Za-z0-9_.-]+):\s*(.*?)\s*$")
_BRIEF = re.compile(
    r"stress-ng: metrc: \[\d+\]\s+([a-z0-9_-]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
    r"\s+([\d.]+)\s+([\d.]+)\s*$"
)
_YAML_TO_METRIC = {
    "bogo-ops": "bogo_ops",
    "bogo-ops-per-second-real-time": "bogo_ops_per_s_real",
    "bogo-ops-per-second-usr-sys-time": "bogo_ops_per_s_usr_sys",
    "wall-clock-time": "wall_clock_s",
    "user-time": "user_time_s",
    "system-time": "system_time_s",
    "cpu-usage-per-instance": "cpu_usage_per_instance_pct",
    "max-rss": "max_rss_kib",
}


def _scalar(text: str) -> float | int | str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_stress_ng_yaml(text: str, stressor: str) -> Metrics:
    """Read the few figures we need from stress-ng's ``--yaml`` file.

    Not a YAML parser: stress-ng writes a fixed, flat layout (``key: value``
    under ``system-info:``, a list of flat mappings under ``metrics:``), and
    the guest has no PyYAML.
    """
    section = ""
    items: list[dict[str, float | int | str]] = []
    version: str | None = None
    for line in text.splitlines():
        match = _YAML_KEY.match(line)
        if match is None:
            if line and not line[0].isspace():
                section = ""  # "---", "...": a document marker ends the section
            continue
        indent, dash, key, value = match.groups()
        if not indent and not dash:
            section = key
        elif section == "system-info" and key == "stress-ng-version":
            version = str(_scalar(value))
        elif section == "metrics":
            if dash:
                items.append({})
            if items:
                items[-1][key] = _scalar(value)
    for item in items:
        if item.get("stressor") == stressor:
            out: Metrics = {"stressor": stressor, "source": "yaml"}
            for yaml_key, name in _YAML_TO_METRIC.items():
                value = item.get(yaml_key)
                out[name] = value if isinstance(value, int | float) else None
            out["stress_ng_version"] = version
            return out
    raise ToolOutputError(f"stress-ng YAML has no metrics for stressor {stressor!r}")


def parse_stress_ng_brief(text: str, stressor: str) -> Metrics:
    """Fallback: the ``--metrics-brief`` table stress-ng logs on stderr."""
    for line in text.splitlines():
        match = _BRIEF.search(line)
        if match and match.group(1) == stressor:
            ops, real, usr, sys_, per_real, per_cpu = match.groups()[1:]
            return {
                "stressor": stressor,
                "source": "brief",
                "bogo_ops": int(ops),
                "bogo_ops_per_s_real": float(per_real),
                "bogo_ops_per_s_usr_sys": float(per_cpu),
                "wall_clock_s": float(real),
                "user_time_s": float(usr),
                "system_time_s": float(sys_),
            }
    raise ToolOutputError(f"no stress-ng metrics line for stressor {stressor!r}")


# -- fio -------------------------------------------------------------------------------


def _first_json_object(text: str) -> dict[str, object]:
    """The first JSON object that starts a line, skipping any notes printed before it."""
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            raise ToolOutputError("fio printed no JSON report")
        if start == 0 or text[start - 1] == "\n":
            try:
                obj, _ = decoder.raw_decode(text, start)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                return obj
        pos = start + 1


def _num(d: object, key: str) -> float:
    value = d.get(key) if isinstance(d, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _percentiles_us(direction: object) -> dict[str, float | None]:
    """clat p50/p95/p99 in microseconds; None when the direction did no I/O."""
    out: dict[str, float | None] = {"p50": None, "p95": None, "p99": None}
    clat = direction.get("clat_ns") if isinstance(direction, dict) else None
    table = clat.get("percentile") if isinstance(clat, dict) else None
    if not isinstance(table, dict) or _num(clat, "N") == 0:
        return out
    for key, value in table.items():
        try:
            q = float(key)
        except ValueError:
            continue
        name = {50.0: "p50", 95.0: "p95", 99.0: "p99"}.get(q)
        if name and isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = round(value / 1000.0, 3)
    return out


def parse_fio_json(text: str) -> Metrics:
    """Compact figures of the single job: rates, bandwidth in bytes/s, latency in µs."""
    report = _first_json_object(text)
    jobs = report.get("jobs")
    if not isinstance(jobs, list) or not jobs or not isinstance(jobs[0], dict):
        raise ToolOutputError("fio JSON report has no jobs")
    job = jobs[0]
    error = job.get("error", 0)
    if error:
        raise ToolOutputError(f"fio job failed with error {error}")
    out: Metrics = {"fio_version": str(report.get("fio version", ""))[:64]}
    total = 0
    for name in ("read", "write"):
        direction = job.get(name, {})
        ios = int(_num(direction, "total_ios"))
        total += ios
        out[f"{name}_iops"] = round(_num(direction, "iops"), 3)
        out[f"{name}_bw_bps"] = int(_num(direction, "bw_bytes"))
        out[f"{name}_ios"] = ios
        for q, value in _percentiles_us(direction).items():
            out[f"{name}_clat_{q}_us"] = value
    out["total_ios"] = total
    out["runtime_ms"] = int(_num(job, "job_runtime"))
    return out


# -- the user's application ------------------------------------------------------------

# ``achieved`` is matched line by line, each line cut to this length: a pattern
# that backtracks badly then costs at most one short line at a time (the
# agent is single-threaded: a runaway match would stall its sampling).
MAX_MATCH_LINE = 4096


def parse_achieved(stdout_parts: Sequence[str], params: AppParams) -> float:
    """The number ``achieved``'s group reads in the *last* matching line of the
    command's stdout (a benchmark's summary comes last), before ``unit_scale``.

    ``stdout_parts`` are pieces of the output that do not run into each other
    (the kept head and tail of a long output), matched separately.
    """
    pattern = params.pattern
    found: str | None = None
    for part in stdout_parts:
        for line in part.splitlines():
            m = pattern.search(line[:MAX_MATCH_LINE])
            if m is not None and m.group(1) is not None:
                found = m.group(1)
    if found is None:
        raise ToolOutputError(f"app.achieved {params.achieved!r} matched no line of its stdout")
    try:
        raw = float(found.strip())
    except ValueError:
        raise ToolOutputError(
            f"app.achieved {params.achieved!r} read {found[:80]!r}, which is not a number"
        ) from None
    if not math.isfinite(raw) or raw < 0:
        raise ToolOutputError(
            f"app.achieved {params.achieved!r} read {found[:80]!r}: not a rate (finite, >= 0)"
        )
    return raw
