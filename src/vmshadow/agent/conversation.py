"""The host's side of the conversation: typed messages and the order they may come in.

``Conversation`` is a pure state machine (no I/O) so that the ordering rules
can be tested exhaustively with arbitrary message sequences:

- ``hello`` comes first, exactly once;
- ``phase_started`` only after the host sent ``run`` for that phase id;
- ``sample``: phase_id null while no phase runs (also before the agent took up
  a request), the running phase's id while one runs;
- ``phase_result`` only for the running phase, with its kind;
- ``error`` with the requested or running phase's id ends that phase; with
  phase_id null it answers a request the agent could not parse, so it ends a
  phase only while the request is still unanswered; any other id is wrong;
- ``pong`` only as many as pings sent; ``bye`` ends everything.

Anything else raises ``ProtocolError("out_of_order")`` and the conversation
is broken for good: after a violation nobody knows where the stream stands.

Samples must also be plausible (``ProtocolError("implausible")``): a guest
once fed 327,600 samples in 3 s with ``cpu_busy=1e15`` and more memory used
than it had, and the host took them all as measurements. So a phase carries
at most as many samples as its duration (up to the agent's own kill limit)
holds sampling intervals, with slack; busy CPUs never exceed the vCPUs the
hello announced, memory used never exceeds the total, the agent's clock
never runs backwards, and rates stay below what any disk or kernel does.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any, TypeAlias

from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phaserun import KILL_GRACE_S, hard_limit_s
from vmshadow.agent.protocol import Message

# The guest refuses a sampling interval under this (guest.py --interval); with
# no interval given, the host assumes the fastest the guest can sample.
MIN_SAMPLE_INTERVAL_S = 0.05
SAMPLE_SLACK_S = 10.0  # boot-up of a phase, the last sample after the tool exits
SAMPLE_SLACK_N = 10
CPU_SLACK = 0.01  # the guest rounds busy CPUs to 4 places after clamping them
MAX_INTERVAL_S = 3600.0  # the guest's interval is at most 60 s; a stalled vCPU adds to it
MAX_MEM_KIB = 2**32  # 4 TiB
MAX_IOPS = 1e8  # far beyond any virtual disk
MAX_BPS = 1e12  # 1 TB/s
MAX_EVENTS_PS = 1e10  # forks or page faults per second


@dataclass(frozen=True)
class Hello:
    agent_version: str
    protocol: int
    kernel: str
    cpus: int
    mem_total_kib: int
    scratch: str
    net_ifaces: tuple[str, ...] = ()  # the guest's network interfaces; a shadow has only lo

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sample:
    """The guest's view over one interval ending at ``t`` (seconds since agent start)."""

    phase_id: str | None
    t: float
    interval_s: float
    cpu_busy: float  # busy CPUs over the interval, e.g. 0.97 of one vCPU
    mem_used_kib: int  # MemTotal - MemFree - Buffers - Cached - SReclaimable
    mem_total_kib: int
    read_iops: float
    write_iops: float
    read_bps: float  # bytes per second
    write_bps: float
    forks_ps: float  # processes and threads created per second
    faults_ps: float  # page faults per second

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PhaseStarted:
    phase_id: str
    t: float


@dataclass(frozen=True)
class PhaseResult:
    phase_id: str
    kind: str
    duration_s: float  # wall time the tool took, as the agent measured it
    exit_code: int
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorReport:
    phase_id: str | None
    code: str
    message: str


@dataclass(frozen=True)
class Pong:
    t: float


@dataclass(frozen=True)
class Bye:
    pass


Event: TypeAlias = Hello | Sample | PhaseStarted | PhaseResult | ErrorReport | Pong | Bye


class AgentReportedError(ProtocolError):
    """The agent refused or failed a request (its ``error`` message), e.g. a tool exited 1.

    A subclass of ``ProtocolError`` so a host that catches only that still
    catches this; ``code`` is the agent's code (``tool_failed``, ``busy``,
    ``bad_field``, ``timeout``, ``no_scratch``, ...).
    """

    def __init__(self, report: ErrorReport) -> None:
        where = f"phase {report.phase_id}" if report.phase_id else "request"
        super().__init__(report.code, f"agent reported an error for {where}: {report.message}")
        self.phase_id = report.phase_id
        self.agent_message = report.message


class State(enum.Enum):
    AWAIT_HELLO = "awaiting hello"
    IDLE = "idle"
    REQUESTED = "phase requested"
    RUNNING = "phase running"
    CLOSING = "shutting down"
    CLOSED = "closed"
    BROKEN = "broken"


def _event(msg: Message) -> Event:
    """The typed form of a validated guest message (numbers as float where declared)."""
    f = msg
    kind = f["type"]
    if kind == "hello":
        return Hello(
            f["agent_version"], f["protocol"], f["kernel"], f["cpus"], f["mem_total_kib"],
            f["scratch"], tuple(f["net_ifaces"]),
        )  # fmt: skip
    if kind == "sample":
        return Sample(
            phase_id=f["phase_id"],
            mem_used_kib=f["mem_used_kib"],
            mem_total_kib=f["mem_total_kib"],
            **{name: float(f[name]) for name in _SAMPLE_FLOATS},
        )
    if kind == "phase_started":
        return PhaseStarted(f["phase_id"], float(f["t"]))
    if kind == "phase_result":
        return PhaseResult(
            f["phase_id"], f["kind"], float(f["duration_s"]), f["exit_code"], dict(f["metrics"])
        )
    if kind == "error":
        return ErrorReport(f["phase_id"], f["code"], f["message"])
    if kind == "pong":
        return Pong(float(f["t"]))
    if kind == "bye":
        return Bye()
    raise ProtocolError("unknown_type", f"type: {kind!r} is not a guest message")


_SAMPLE_FLOATS = (
    "t", "interval_s", "cpu_busy", "read_iops", "write_iops", "read_bps", "write_bps",
    "forks_ps", "faults_ps",
)  # fmt: skip


def max_samples(duration_s: float, interval_s: float) -> int:
    """Samples a phase of ``duration_s`` may carry at one per ``interval_s``: up to
    the agent's kill limit for the tool, with slack."""
    span = hard_limit_s(math.ceil(duration_s)) + KILL_GRACE_S + SAMPLE_SLACK_S
    return math.ceil(span / max(interval_s, MIN_SAMPLE_INTERVAL_S)) + SAMPLE_SLACK_N


class Conversation:
    def __init__(self, sample_interval_s: float | None = None) -> None:
        self.state = State.AWAIT_HELLO
        self.phase_id: str | None = None  # the requested or running phase
        self.phase_kind: str | None = None
        self.hello: Hello | None = None
        self.pings = 0  # pongs still owed
        self.failure: ProtocolError | None = None
        self.sample_interval_s = sample_interval_s or MIN_SAMPLE_INTERVAL_S
        self.samples_left: int | None = None  # in the requested or running phase
        self.last_sample_t = 0.0

    # -- what the host sent --------------------------------------------------------------
    def sent_run(self, phase_id: str, kind: str, duration_s: float | None = None) -> None:
        if self.state is not State.IDLE:
            raise ProtocolError("out_of_order", f"cannot run phase {phase_id}: {self._where()}")
        self.state, self.phase_id, self.phase_kind = State.REQUESTED, phase_id, kind
        self.samples_left = (
            None if duration_s is None else max_samples(duration_s, self.sample_interval_s)
        )

    def sent_ping(self) -> None:
        self.pings += 1

    def sent_shutdown(self) -> None:
        if self.state not in (State.CLOSED, State.BROKEN):
            self.state = State.CLOSING

    # -- what the agent sent -------------------------------------------------------------
    def receive(self, msg: Message) -> Event:
        """Accept one validated message or raise ``ProtocolError`` (and stay broken)."""
        if self.state is State.BROKEN:
            raise ProtocolError("broken", f"the conversation already failed: {self.failure}")
        try:
            event = _event(msg)
            self._advance(event)
        except ProtocolError as exc:
            if self.state is not State.CLOSING:  # while closing, stray messages are forgiven
                self.state, self.failure = State.BROKEN, exc
            raise
        except (TypeError, ValueError) as exc:  # cannot happen for validated messages
            self.state = State.BROKEN
            self.failure = ProtocolError("bad_field", str(exc))
            raise self.failure from None
        return event

    def _where(self) -> str:
        phase = f" ({self.phase_id})" if self.phase_id else ""
        return f"the conversation is {self.state.value}{phase}"

    def _wrong(self, what: str) -> ProtocolError:
        return ProtocolError("out_of_order", f"unexpected {what}: {self._where()}")

    def _advance(self, event: Event) -> None:
        s = self.state
        if s is State.CLOSED:
            raise self._wrong(type(event).__name__)
        if isinstance(event, Bye):
            self.state, self.phase_id = State.CLOSED, None
            return
        if s is State.CLOSING:
            return  # drain whatever was in flight when we asked the agent to stop
        if isinstance(event, Hello):
            if s is not State.AWAIT_HELLO:
                raise self._wrong("second hello")
            self.hello, self.state = event, State.IDLE
            return
        if s is State.AWAIT_HELLO:
            raise self._wrong(f"{type(event).__name__} before hello")
        if isinstance(event, Pong):
            if self.pings <= 0:
                raise self._wrong("pong without ping")
            self.pings -= 1
        elif isinstance(event, Sample):
            expected = self.phase_id if s is State.RUNNING else None
            if event.phase_id != expected:
                raise self._wrong(f"sample for phase {event.phase_id}")
            self._check_sample(event)
        elif isinstance(event, PhaseStarted):
            if s is not State.REQUESTED or event.phase_id != self.phase_id:
                raise self._wrong(f"phase_started for {event.phase_id}")
            self.state = State.RUNNING
        elif isinstance(event, PhaseResult):
            if s is not State.RUNNING or event.phase_id != self.phase_id:
                raise self._wrong(f"phase_result for {event.phase_id}")
            if event.kind != self.phase_kind:
                raise self._wrong(f"phase_result of kind {event.kind} for a {self.phase_kind}")
            self.state, self.phase_id = State.IDLE, None
        elif isinstance(event, ErrorReport):
            if event.phase_id is not None and (
                s not in (State.REQUESTED, State.RUNNING) or event.phase_id != self.phase_id
            ):
                raise self._wrong(f"error for phase {event.phase_id}")
            # Null while requested: the run itself was rejected. Null while running
            # answers something else, so the phase goes on.
            if event.phase_id is not None or s is State.REQUESTED:
                self.state, self.phase_id = State.IDLE, None

    def _check_sample(self, sample: Sample) -> None:
        """Refuse a sample no guest could have taken (see the module's docstring)."""
        if self.state in (State.REQUESTED, State.RUNNING) and self.samples_left is not None:
            if self.samples_left <= 0:
                raise ProtocolError(
                    "implausible",
                    f"more samples in phase {self.phase_id} than its duration holds at one "
                    f"per {self.sample_interval_s:g} s",
                )
            self.samples_left -= 1
        assert self.hello is not None  # samples come after hello (checked before)

        def bad(field: str, why: str) -> ProtocolError:
            return ProtocolError("implausible", f"sample.{field}: {why}", field=f"sample.{field}")

        if sample.cpu_busy > self.hello.cpus + CPU_SLACK:
            raise bad("cpu_busy", f"{sample.cpu_busy:g} busy CPUs on {self.hello.cpus} vCPUs")
        if sample.mem_total_kib > MAX_MEM_KIB:
            raise bad("mem_total_kib", f"{sample.mem_total_kib} KiB is over {MAX_MEM_KIB} KiB")
        if sample.mem_used_kib > sample.mem_total_kib:
            raise bad(
                "mem_used_kib",
                f"{sample.mem_used_kib} KiB used of {sample.mem_total_kib} KiB in total",
            )
        if not 0 < sample.interval_s <= MAX_INTERVAL_S:
            raise bad("interval_s", f"{sample.interval_s:g} s is not in (0, {MAX_INTERVAL_S:g}]")
        if sample.t < self.last_sample_t:
            raise bad("t", f"{sample.t:g} s is before the last sample's {self.last_sample_t:g} s")
        self.last_sample_t = sample.t
        for name, top in (
            ("read_iops", MAX_IOPS), ("write_iops", MAX_IOPS), ("read_bps", MAX_BPS),
            ("write_bps", MAX_BPS), ("forks_ps", MAX_EVENTS_PS), ("faults_ps", MAX_EVENTS_PS),
        ):  # fmt: skip
            value = getattr(sample, name)
            if value > top:
                raise bad(name, f"{value:g}/s is over {top:g}/s")
