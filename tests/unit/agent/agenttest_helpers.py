"""Strategies and fakes shared by the agent tests (imported by module name)."""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from vmshadow.agent import appspec
from vmshadow.agent import phasespec as ps
from vmshadow.agent.appspec import AppParams
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.protocol import message

phase_ids = st.from_regex(ps.PHASE_ID_RE, fullmatch=True)
durations = st.integers(*ps.DURATION_RANGE)
finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def stress_ng_params(draw: st.DrawFn) -> ps.StressNgParams:
    stressor = draw(st.sampled_from(ps.STRESSORS))
    return ps.StressNgParams(
        stressor=stressor,
        workers=draw(st.integers(*ps.WORKERS_RANGE)),
        cpu_load=draw(st.none() | st.integers(*ps.CPU_LOAD_RANGE)) if stressor == "cpu" else None,
        vm_bytes_mib=draw(st.integers(*ps.VM_BYTES_MIB_RANGE)) if stressor == "vm" else None,
        vm_keep=draw(st.booleans()) if stressor == "vm" else False,
    )


@st.composite
def fio_params(draw: st.DrawFn) -> ps.FioParams:
    engine = draw(st.sampled_from(ps.FIO_ENGINES))
    rw = draw(st.sampled_from(ps.FIO_RW))
    return ps.FioParams(
        rw=rw,
        bs_kib=draw(st.sampled_from(ps.FIO_BS_KIB)),
        iodepth=1 if engine in ps.SYNC_ENGINES else draw(st.integers(*ps.IODEPTH_RANGE)),
        size_mib=draw(st.integers(*ps.SIZE_MIB_RANGE)),
        rate_iops=draw(st.none() | st.integers(*ps.RATE_IOPS_RANGE)),
        direct=draw(st.booleans()),
        fsync=draw(st.integers(*ps.FSYNC_RANGE)),
        ioengine=engine,
        numjobs=draw(st.integers(*ps.NUMJOBS_RANGE)),
        rwmixread=draw(st.none() | st.integers(*ps.RWMIX_RANGE)) if rw in ps.MIXED_RW else None,
    )


_arg_text = st.text(
    alphabet=st.characters(blacklist_characters="{}\x00", blacklist_categories=("Cs",)),
    max_size=20,
)
_arg = st.lists(st.sampled_from(["{rate}", "{duration}", "{{", "}}"]) | _arg_text, max_size=4).map(
    "".join
)


@st.composite
def app_params(draw: st.DrawFn) -> AppParams:
    program = draw(st.from_regex(appspec.PROGRAM_NAME_RE, fullmatch=True))
    server = draw(st.none() | st.lists(_arg, max_size=3).map(lambda a: ("server", *a)))
    return AppParams(
        command=(program, *draw(st.lists(_arg, max_size=4))),
        achieved=draw(st.sampled_from([r"tps = ([0-9.]+)", r"(\d+) ops", r"rate:(?:\s*)(\S+)"])),
        rate=draw(st.floats(min_value=0.001, max_value=appspec.RATE_MAX)),
        unit_scale=draw(st.floats(min_value=1e-6, max_value=1e6)),
        server=server,
        ready_port=draw(st.none() | st.integers(*appspec.PORT_RANGE)),
        ready_timeout_s=draw(st.integers(*appspec.READY_TIMEOUT_RANGE)),
        user=draw(st.sampled_from(["nobody", "postgres", "redis", "app_1"])),
    )


@st.composite
def phase_specs(draw: st.DrawFn) -> PhaseSpec:
    kind = draw(st.sampled_from(ps.KINDS))
    params: ps.Params
    if kind == "stress-ng":
        params = draw(stress_ng_params())
    elif kind == "fio":
        params = draw(fio_params())
    elif kind == "app":
        params = draw(app_params())
    else:
        params = ps.IdleParams()
    return PhaseSpec(draw(phase_ids), kind, draw(durations), params)


text = st.text(max_size=40)
metric_values = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | finite | text
metrics = st.dictionaries(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), metric_values, max_size=8)


OPT_PHASE_IDS = st.none() | phase_ids


def samples(phase_id: st.SearchStrategy[str | None] = OPT_PHASE_IDS) -> Any:
    return st.builds(
        lambda pid, t, i, c, m, mt, ri, wi, rb, wb, fk, ft: message(
            "sample", phase_id=pid, t=t, interval_s=i, cpu_busy=c, mem_used_kib=m,
            mem_total_kib=mt, read_iops=ri, write_iops=wi, read_bps=rb, write_bps=wb,
            forks_ps=fk, faults_ps=ft,
        ),
        phase_id, finite, finite, finite, st.integers(0, 2**40), st.integers(0, 2**40),
        finite, finite, finite, finite, finite, finite,
    )  # fmt: skip


guest_messages = st.one_of(
    st.builds(
        lambda av, k, c, m, s, n: message(
            "hello", agent_version=av, protocol=1, kernel=k, cpus=c, mem_total_kib=m, scratch=s,
            net_ifaces=n,
        ),
        text, text, st.integers(1, 4096), st.integers(0, 2**40), text,
        st.lists(st.from_regex(r"[a-z0-9]{1,15}", fullmatch=True), max_size=4),
    ),
    st.builds(lambda t: message("pong", t=t), finite),
    st.builds(lambda p, t: message("phase_started", phase_id=p, t=t), phase_ids, finite),
    samples(),
    st.builds(
        lambda p, k, d, e, m: message(
            "phase_result", phase_id=p, kind=k, duration_s=d, exit_code=e, metrics=m
        ),
        phase_ids, st.sampled_from(ps.KINDS), finite, st.integers(-255, 255), metrics,
    ),
    st.builds(
        lambda p, c, m: message("error", phase_id=p, code=c, message=m),
        st.none() | phase_ids, st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True), text,
    ),
    st.just(message("bye")),
)  # fmt: skip

host_messages = st.one_of(
    st.builds(lambda s: message("run", phase=s.to_dict()), phase_specs()),
    st.just(message("ping")),
    st.just(message("shutdown")),
)


class FakeTransport:
    """Hands out scripted chunks, then EOF (``then="eof"``) or timeouts."""

    def __init__(self, chunks: Iterable[bytes], then: str = "eof") -> None:
        self.chunks = list(chunks)
        self.then = then
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, max_bytes: int, timeout: float) -> bytes:
        if self.chunks:
            chunk = self.chunks.pop(0)
            if len(chunk) > max_bytes:
                self.chunks.insert(0, chunk[max_bytes:])
            return chunk[:max_bytes]
        if self.then == "eof":
            return b""
        raise TimeoutError("scripted silence")

    def close(self) -> None:
        self.closed = True


class PipeTransport:
    """The host end of an in-process agent wired with two pipes."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd

    def send(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.wfd, data) :]

    def recv(self, max_bytes: int, timeout: float) -> bytes:
        ready, _, _ = select.select([self.rfd], [], [], max(timeout, 0))
        if not ready:
            raise TimeoutError("silence")
        return os.read(self.rfd, max_bytes)

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
