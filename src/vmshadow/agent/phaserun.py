"""Run one phase as a child process (or a plain wait, for idle) without blocking the agent.

The agent's loop keeps sampling while a phase runs, so a phase is started,
then polled: ``fileno()`` gives a pidfd that becomes readable when the tool
exits (with a short poll interval as the fallback where pidfds are missing).
Tools run in their own session so that they and every worker they fork can
be killed as one process group, and never inherit the agent's channel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmshadow.agent.appspec import AppParams
from vmshadow.agent.phasespec import FioParams, PhaseSpec, StressNgParams
from vmshadow.agent.tools import (
    Metrics,
    ToolOutputError,
    fio_argv,
    parse_fio_json,
    parse_stress_ng_brief,
    parse_stress_ng_yaml,
    stress_ng_argv,
)

MIB = 1024 * 1024
KILL_GRACE_S = 2.0
# How a tool ends on the SIGINT of an early stop: fio exits 128 (or 130),
# a process without a handler dies of the signal (-2 from Popen.wait).
STOPPED_CODES = frozenset({128, 130, -int(signal.SIGINT)})
TAIL_CHARS = 600
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


class PhaseStartError(Exception):
    """The phase could not start; ``code`` becomes the ``error`` message's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Outcome:
    """How a phase ended: ``metrics`` on success, else ``error`` = (code, message)."""

    spec: PhaseSpec
    duration_s: float
    exit_code: int
    metrics: Metrics = field(default_factory=dict)
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class Tools:
    stress_ng: str | None
    fio: str | None
    # The guest OS's name when it is a distribution's (app phases run only
    # there); None in vmshadow's built-in shadow OS. See ``apprun``.
    app_os: str | None = None

    @classmethod
    def find(cls) -> Tools:
        # The guest's init may not set PATH; Debian installs both in /usr/bin.
        path = os.environ.get("PATH", "") + os.pathsep + "/usr/bin:/usr/sbin:/bin"
        return cls(shutil.which("stress-ng", path=path), shutil.which("fio", path=path), os_name())


def os_name(paths: tuple[str, ...] = OS_RELEASE) -> str | None:
    """The guest OS's PRETTY_NAME (or NAME), None when it has no os-release at all."""
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                text = f.read(16384)
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        return (fields.get("PRETTY_NAME") or fields.get("NAME") or "unnamed OS")[:256]
    return None


def hard_limit_s(duration_s: int) -> float:
    """How long a tool may run before it is killed: its duration plus generous slack.

    fio may first lay out a file and stress-ng takes a while to reap workers
    under TCG, so the slack is large; it only exists to stop a hung tool.
    """
    return duration_s + max(30.0, float(duration_s))


def check_scratch(scratch: str, params: FioParams) -> None:
    """fio targets only the scratch device, which must exist (fio would create a file)."""
    try:
        st = os.stat(scratch)
    except OSError as exc:
        raise PhaseStartError("no_scratch", f"scratch {scratch}: {exc.strerror}") from None
    if stat.S_ISBLK(st.st_mode):
        fd = os.open(scratch, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
        if params.size_mib * MIB > size:
            raise PhaseStartError(
                "bad_field",
                f"params.size_mib: {params.size_mib} exceeds the scratch device "
                f"({size // MIB} MiB)",
            )
    elif not stat.S_ISREG(st.st_mode):
        raise PhaseStartError("no_scratch", f"scratch {scratch} is not a block device or file")


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise ToolOutputError(f"no report {os.path.basename(path)}: {exc.strerror}") from None


def _tail(path: str) -> str:
    try:
        text = _read(path)
    except ToolOutputError:
        return ""
    return " | ".join(ln.strip() for ln in text[-TAIL_CHARS:].splitlines() if ln.strip())


def oom_kills(vmstat: str = "/proc/vmstat") -> int | None:
    """Processes the kernel's OOM killer has ended since boot (None if unknown)."""
    try:
        with open(vmstat) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return None


HELD_SHARE = 0.1  # below this share of its vm_bytes, a vm worker never held its memory


def _memory_not_held(params: StressNgParams, metrics: Metrics) -> tuple[str, str] | None:
    """An ``out_of_memory`` error when a vm stressor never got the memory it asked for.

    Seen in a 512 MiB guest asked for 900 MiB: stress-ng's vm stressor retries
    its failing mmap quietly and exits 0 after 0 bogo ops with a 3 MiB RSS. Its
    figures would describe an idle guest, so the phase fails instead.
    """
    rss = metrics.get("max_rss_kib")
    if params.stressor != "vm" or params.vm_bytes_mib is None:
        return None
    if isinstance(rss, bool) or not isinstance(rss, int | float):
        return None  # the brief fallback has no RSS: nothing to judge by
    if rss >= HELD_SHARE * params.vm_bytes_mib * 1024:
        return None
    return (
        "out_of_memory",
        f"stress-ng vm held at most {rss / 1024:.0f} MiB of the {params.vm_bytes_mib} MiB "
        "it asked for: the guest has too little memory for this phase",
    )


class RunningPhase:
    """One phase in flight; create with ``start``."""

    # Where the OOM-kill counter is read (a test points it at its own file).
    vmstat = "/proc/vmstat"

    def __init__(
        self, spec: PhaseSpec, workdir: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self._dir = workdir
        self._clock = clock
        self.started = clock()
        self.deadline = self.started + hard_limit_s(spec.duration_s)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._oom_kills = oom_kills(self.vmstat)
        self.stopped_early = False

    @classmethod
    def start(
        cls,
        spec: PhaseSpec,
        scratch: str,
        tools: Tools,
        clock: Callable[[], float] = time.monotonic,
    ) -> RunningPhase:
        # Not an idle wait: an app phase has a runner of its own (guest.start_phase).
        assert not isinstance(spec.params, AppParams), "app phases run through apprun"
        argv: list[str] | None = None
        workdir = tempfile.mkdtemp(prefix=f"vmshadow-{spec.phase_id}-")
        try:
            if isinstance(spec.params, StressNgParams):
                if tools.stress_ng is None:
                    raise PhaseStartError("tool_missing", "stress-ng is not installed")
                yaml = os.path.join(workdir, "metrics.yaml")
                argv = stress_ng_argv(spec.params, spec.duration_s, yaml, tools.stress_ng)
            elif isinstance(spec.params, FioParams):
                if tools.fio is None:
                    raise PhaseStartError("tool_missing", "fio is not installed")
                check_scratch(scratch, spec.params)
                report = os.path.join(workdir, "fio.json")
                argv = fio_argv(spec.params, spec.duration_s, scratch, report, tools.fio)
            phase = cls(spec, workdir, clock)
            if argv is not None:
                phase._spawn(argv)
            else:
                phase.deadline = phase.started + spec.duration_s  # idle: the wait is the phase
            return phase
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _spawn(self, argv: list[str]) -> None:
        with open(os.path.join(self._dir, "log.txt"), "wb") as log:
            try:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise PhaseStartError("tool_failed", f"cannot run {argv[0]}: {exc}") from None
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # poll() every loop turn instead

    def fileno(self) -> int | None:
        """A descriptor readable when the tool exits, or None (idle, or no pidfd)."""
        return self._pidfd

    def filenos(self) -> list[int]:
        """Every descriptor the loop should wake on (``apprun`` has several)."""
        return [] if self._pidfd is None else [self._pidfd]

    def wake_at(self) -> float:
        """When the loop must look at this phase again even without events."""
        if self._proc is None or self._pidfd is not None:
            return self.deadline
        return self._clock() + 0.1

    def _exited(self) -> bool:
        assert self._proc is not None
        try:
            # WNOWAIT leaves the zombie in place: its pid (= our process group id)
            # cannot be reused before we kill any straggling workers below.
            info = os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def poll(self) -> Outcome | None:
        """The outcome once the phase is over, else None; kills a tool past its limit."""
        now = self._clock()
        if self._proc is None:
            return self._finish(0) if now >= self.deadline else None
        if self._exited():
            code = self._reap()
            if self.stopped_early and code in STOPPED_CODES:
                code = 0  # the exit status of the SIGINT we sent, not a failure
            return self._finish(code)
        if now >= self.deadline:
            self._kill()
            outcome = self._finish(self._reap(), collect=False)
            limit = hard_limit_s(self.spec.duration_s)
            outcome.error = ("timeout", f"{self.spec.kind} ran past {limit:.0f} s and was killed")
            return outcome
        return None

    def stop_early(self) -> None:
        """End the phase before its duration, keeping its result (the host's ``stop``).

        SIGINT is the tools' own "enough": stress-ng stops its workers and still
        writes its metrics, fio writes its JSON report (after a "terminating on
        signal" line, which ``parse_fio_json`` skips) and exits 128 or 130.
        ``poll`` then collects as for a phase that ran its length.
        """
        if self.stopped_early:
            return
        self.stopped_early = True
        if self._proc is None:
            self.deadline = min(self.deadline, self._clock())  # idle: the wait ends now
        else:
            self._signal_group(signal.SIGINT)

    def abort(self) -> Outcome:
        """Stop the phase now (shutdown or the host went away)."""
        code = 0
        if self._proc is not None:
            self._kill()
            code = self._reap()
        outcome = self._finish(code, collect=False)
        outcome.error = ("aborted", "the agent is shutting down")
        return outcome

    def _kill(self) -> None:
        assert self._proc is not None
        self._signal_group(signal.SIGTERM)
        # Wait without reaping, so the group id stays ours until the SIGKILL.
        give_up = time.monotonic() + KILL_GRACE_S
        while not self._exited() and time.monotonic() < give_up:
            time.sleep(0.05)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)  # fails only when the group is already gone

    def _reap(self) -> int:
        assert self._proc is not None
        self._signal_group(signal.SIGKILL)  # workers left behind by a dead parent
        return self._proc.wait()

    def _finish(self, exit_code: int, *, collect: bool = True) -> Outcome:
        outcome = Outcome(self.spec, round(self._clock() - self.started, 3), exit_code)
        try:
            if collect:
                self._collect(outcome)
        finally:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
            shutil.rmtree(self._dir, ignore_errors=True)
        return outcome

    def _collect(self, outcome: Outcome) -> None:
        params = self.spec.params
        if self._proc is None:
            return
        tool = self.spec.kind
        log = os.path.join(self._dir, "log.txt")
        before, after = self._oom_kills, oom_kills(self.vmstat)
        if before is not None and after is not None and after > before:
            # stress-ng survives its workers being OOM-killed (it exits 0 having
            # done no work), so the kernel's counter is the only honest signal:
            # the figures of such a phase would measure the OOM killer, not the load.
            outcome.error = (
                "out_of_memory",
                f"the guest's OOM killer ended {after - before} process(es) during "
                f"the phase: the workload needs more memory than this guest has; "
                f"{tool} log: {_tail(log)}",
            )
            return
        if outcome.exit_code != 0:
            outcome.error = ("tool_failed", f"{tool} exited {outcome.exit_code}: {_tail(log)}")
            return
        try:
            if isinstance(params, StressNgParams):
                outcome.metrics = self._stress_ng_metrics(params.stressor, log)
                outcome.error = _memory_not_held(params, outcome.metrics)
            elif isinstance(params, FioParams):
                outcome.metrics = parse_fio_json(_read(os.path.join(self._dir, "fio.json")))
        except ToolOutputError as exc:
            outcome.error = ("bad_output", f"{tool}: {exc}; log: {_tail(log)}")

    def _stress_ng_metrics(self, stressor: str, log: str) -> Metrics:
        try:
            return parse_stress_ng_yaml(_read(os.path.join(self._dir, "metrics.yaml")), stressor)
        except ToolOutputError:
            return parse_stress_ng_brief(_read(log), stressor)
