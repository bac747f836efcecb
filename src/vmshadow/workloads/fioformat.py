"""The fio job file format: sections and options with their line numbers.

fio's format is INI-like but not INI, hence this small parser rather than
``configparser``: two sections with the same name are two jobs (configparser's
strict mode refuses them, its lax mode silently merges them), options may be
bare words (``time_based``), ``[global]`` may appear more than once, and
``include`` is a directive, not an option. Parsing it ourselves keeps every
line number for the error and leaves no construct half-understood.

This module reads the file's shape and refuses what is dangerous whatever
its value (commands, other files, ``$`` expansion); which options a job may
set, and to what, is ``fiojob``'s allow-list.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from vmshadow.domain.errors import ConfigError

MAX_JOB_BYTES = 16 * 1024
MAX_LINES = 200

# Plain words only: no `$` (environment and `$(( ))` expansion), no spaces,
# quotes, backticks or semicolons. Every allowed option's value fits this.
_VALUE_RE = re.compile(r"[A-Za-z0-9_.:/,%+-]{1,256}")
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SECTION_RE = re.compile(r"\[([^\[\]]{1,64})\]")
_OPTION_RE = re.compile(r"([A-Za-z0-9_-]{1,64})(?:\s*=\s*(.*))?")

# The options fio offers that are refused with a specific reason: those that run
# programs, reach files other than the scratch disk, or change the guest itself.
DANGEROUS = {
    "exec_prerun": "runs a command in the guest",
    "exec_postrun": "runs a command in the guest",
    "trigger": "runs a command on a trigger",
    "trigger-cmd": "runs a command on a trigger",
    "trigger-file": "runs a command on a trigger",
    "trigger-timeout": "runs a command on a trigger",
    "include": "pulls in another file",
    "directory": "places files outside the scratch disk",
    "opendir": "reads a directory outside the scratch disk",
    "filename_format": "places files outside the scratch disk",
    "unique_filename": "places files outside the scratch disk",
    "lockfile": "creates lock files",
    "read_iolog": "reads another file",
    "write_iolog": "writes another file",
    "replay_redirect": "redirects I/O to another device",
    "write_bw_log": "writes log files",
    "write_lat_log": "writes log files",
    "write_iops_log": "writes log files",
    "write_hist_log": "writes log files",
    "per_job_logs": "writes log files",
    "log_avg_msec": "writes log files",
    "merge_blktrace_file": "writes another file",
    "ioscheduler": "changes the guest's disk scheduler",
    "cgroup": "creates control groups in the guest",
    "uid": "changes the user the job runs as",
    "gid": "changes the group the job runs as",
    "output": "writes another file",
    "exitall_on_error": "changes how other jobs end",
}
# fio accepts these spellings of the same option; a job may not give both.
ALIASES = {"readwrite": "rw", "blocksize": "bs"}


@dataclass(frozen=True)
class Option:
    name: str
    value: str | None  # None for a bare option such as `time_based`
    line: int


@dataclass
class Section:
    name: str
    line: int
    options: list[Option] = field(default_factory=list)


# Names a line in errors: ``file:line``, or the line of a profile that embeds the job.
Where = Callable[[int], str]


def option_error(where: Where, line: int, option: str, reason: str) -> ConfigError:
    return ConfigError(f"{where(line)}: {option}", reason)


def sections(text: str, where: Where) -> list[Section]:
    """Sections in file order, each with its options and their line numbers."""
    if len(text.encode("utf-8", "replace")) > MAX_JOB_BYTES:
        raise ConfigError(where(1), f"an fio job file is at most {MAX_JOB_BYTES} bytes")
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise ConfigError(where(MAX_LINES + 1), f"an fio job file is at most {MAX_LINES} lines")
    out: list[Section] = []
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if not line.isprintable():
            raise ConfigError(where(n), "control characters are not allowed")
        if line.startswith("["):
            m = _SECTION_RE.fullmatch(line)
            if m is None or not _NAME_RE.fullmatch(m.group(1)):
                raise ConfigError(
                    where(n), "a section header is [name] with letters, digits, '_' or '-'"
                )
            out.append(Section(m.group(1), n))
            continue
        if "$" in line:
            # fio expands ${VAR} from the environment and $((...)) as arithmetic.
            raise ConfigError(where(n), "'$' expansion (environment, arithmetic) is not allowed")
        first = line.split(None, 1)[0].split("=", 1)[0]
        if first in ("include", "#include"):
            raise option_error(where, n, "include", DANGEROUS["include"])
        m = _OPTION_RE.fullmatch(line)
        if m is None:
            raise ConfigError(where(n), f"not an option (name=value or a bare name): {line[:60]!r}")
        name, value = m.group(1), m.group(2)
        if name in DANGEROUS:
            raise option_error(where, n, name, f"{DANGEROUS[name]}; refused")
        if value is not None:
            value = value.strip()
            if not _VALUE_RE.fullmatch(value):
                raise option_error(
                    where,
                    n,
                    name,
                    "a value is one plain word of letters, digits and . _ - + : / , % "
                    "(no spaces, quotes or comments)",
                )
        if not out:
            raise option_error(where, n, name, "options belong to a section: start with [global]")
        out[-1].options.append(Option(name, value, n))
    return out


def job_options(sections: list[Section], where: Where) -> tuple[str, list[Option], int]:
    """The one job's name, its effective options (globals first) and its header line."""
    jobs = [s for s in sections if s.name != "global"]
    if not jobs:
        raise ConfigError(where(1), "no job section: add one, e.g. [db]")
    if len(jobs) > 1:
        # fio runs each section as its own job, also when two share a name.
        raise ConfigError(
            f"{where(jobs[1].line)}: [{jobs[1].name}]",
            "one job per profile (the ramp drives one fio job; " "use numjobs for parallel copies)",
        )
    job = jobs[0]
    for s in sections:
        if s.name == "global" and s.line > job.line:
            raise ConfigError(
                where(s.line), "[global] after the job has no effect on it: move it above"
            )
    effective: dict[str, Option] = {}
    for s in sections:  # globals first, then the job, so the job's own value wins
        seen: dict[str, int] = {}
        for opt in s.options:
            key = ALIASES.get(opt.name, opt.name)
            if key in seen:
                raise option_error(
                    where, opt.line, opt.name, f"given twice in [{s.name}] (also line {seen[key]})"
                )
            seen[key] = opt.line
            effective[key] = Option(key, opt.value, opt.line)
    return job.name, list(effective.values()), job.line
