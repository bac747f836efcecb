"""The in-guest agent: ``python3 -m vmshadow.agent.guest``.

In the shadow (started by the root init)::

    python3 -m vmshadow.agent.guest --port-name org.vmshadow.agent.0 --scratch /dev/vdb

On a host, for tests and host-process mode::

    python3 -m vmshadow.agent.guest --stdio --scratch /tmp/scratch.img

One thread, one ``poll`` loop: it samples /proc every ``--interval`` seconds
(tagging samples with the running phase), reads requests, runs one phase at a
time and writes replies, none of which may block the others. Bad input from
the host is answered with an ``error`` message and never ends the agent; a
``ping`` (and ``resync``, after a restore) is answered with ``pong``; ``stop`` ends the
running phase early with its result. ``shutdown`` (or SIGTERM) stops a running
phase, says ``bye`` and exits 0; in the guest the init then powers off.
On each (re)connection of the host to the port the agent says ``hello`` first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from vmshadow.agent.apprun import RunningApp
from vmshadow.agent.appspec import AppParams
from vmshadow.agent.channel import Channel, Outbox, PeerGone, find_port
from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phaserun import Outcome, PhaseStartError, RunningPhase, Tools
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.procfs import Sampler, net_interfaces
from vmshadow.agent.protocol import (
    AGENT_VERSION,
    HOST_TYPES,
    MAX_TEXT,
    PROTOCOL_VERSION,
    LineDecoder,
    Message,
    encode_message,
    message,
)
from vmshadow.agent.resync import resync

PROBE_S = 0.25  # how often to look for the host while the port is unconnected
FLUSH_AT_EXIT_S = 5.0
MAX_LOOP_FAILURES = 20


def begin_phase(
    spec: PhaseSpec, scratch: str, tools: Tools, clock: Callable[[], float] = time.monotonic
) -> RunningPhase | RunningApp:
    """A phase under way: the user's application (``apprun``) or a tool or idle wait."""
    if isinstance(spec.params, AppParams):
        return RunningApp.start(spec, tools, clock)
    return RunningPhase.start(spec, scratch, tools, clock)


def log(text: str) -> None:
    # stderr is the console in the guest; stdout may be the protocol stream.
    # A full or non-blocking console must not take the agent down.
    with contextlib.suppress(OSError):
        print(f"vmshadow-agent: {text}", file=sys.stderr, flush=True)


class Agent:
    def __init__(
        self,
        channel: Channel,
        scratch: str,
        interval_s: float = 1.0,
        *,
        tools: Tools | None = None,
        sampler: Sampler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.scratch = scratch
        self.interval = interval_s
        self.tools = tools or Tools.find()
        self.clock = clock
        self.t0 = clock()
        self.sampler = sampler or Sampler(clock=clock)
        self.outbox = Outbox()
        self.decoder = LineDecoder(HOST_TYPES)
        self.phase: RunningPhase | RunningApp | None = None
        self.connected = False
        self.stopping = False
        self.stop_requested = False  # set from a signal handler, acted on by the loop
        self._next_probe = self.t0
        self.next_tick = self.t0 + interval_s

    # -- outgoing ------------------------------------------------------------------------
    def t(self) -> float:
        return round(self.clock() - self.t0, 3)

    def send(self, msg: Message, *, droppable: bool = False) -> None:
        if not self.connected:
            return  # nobody to tell; the host gets a fresh hello when it connects
        try:
            line = encode_message(msg)
        except ProtocolError as exc:
            # A bug on our side; report it rather than die with the phase half-done.
            log(f"refusing to send an invalid {msg.get('type')} message: {exc}")
            line = encode_message(self.error(None, "internal", f"invalid reply: {exc}"))
        self.outbox.push(line, droppable=droppable)

    @staticmethod
    def error(phase_id: str | None, code: str, text: str) -> Message:
        return message("error", phase_id=phase_id, code=code, message=text[:MAX_TEXT])

    def hello(self) -> Message:
        return message(
            "hello",
            agent_version=AGENT_VERSION,
            protocol=PROTOCOL_VERSION,
            kernel=os.uname().release[:256],
            cpus=os.cpu_count() or 1,
            mem_total_kib=self.sampler.mem_total_kib(),
            scratch=self.scratch[:MAX_TEXT],
            net_ifaces=net_interfaces(),
        )

    def on_connect(self) -> None:
        self.connected = True
        self.outbox.clear()
        self.decoder = LineDecoder(HOST_TYPES)
        self.send(self.hello())

    def on_disconnect(self, why: str) -> None:
        self.connected = False
        self.outbox.clear()
        if not self.channel.reconnects:
            log(f"host closed the channel ({why}); exiting")
            self.stop()
        else:
            self._next_probe = self.clock() + PROBE_S

    # -- incoming ------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Handle bytes from the host; every failure becomes an ``error`` message."""
        for item in self.decoder.feed_all(data):
            if isinstance(item, ProtocolError):
                self.send(self.error(None, item.code, item.message))
            else:
                self.dispatch(item)

    def dispatch(self, msg: Message) -> None:
        if self.stopping:
            return  # after bye, nothing more is said
        try:
            kind = msg["type"]
            if kind == "ping":
                self.send(message("pong", t=self.t()))
            elif kind == "shutdown":
                self.stop()
            elif kind == "stop":
                if self.phase is not None and self.phase.spec.phase_id == msg["phase_id"]:
                    self.phase.stop_early()
            elif kind == "resync":
                resync(
                    float(msg["epoch_s"]),
                    bytes.fromhex(msg["entropy"]),
                    set_clock=self.channel.reconnects,
                )
                self.send(message("pong", t=self.t()))
            elif kind == "run":
                # Validated by the decoder already; parse into the typed spec.
                self.start_phase(PhaseSpec.from_dict(msg["phase"]))
        except Exception as exc:  # last resort: a crash here would power the shadow off
            log(_format_exception(exc))
            self.send(self.error(None, "internal", f"{type(exc).__name__}: {exc}"))

    def start_phase(self, spec: PhaseSpec) -> None:
        if self.phase is not None:
            running = self.phase.spec.phase_id
            self.send(self.error(spec.phase_id, "busy", f"phase {running} is still running"))
            return
        try:
            started = begin_phase(spec, self.scratch, self.tools, self.clock)
        except PhaseStartError as exc:
            self.send(self.error(spec.phase_id, exc.code, exc.message))
            return
        # The samples restart with the phase: the gap since the last one goes
        # out now, unphased (it is also the guest's state just before the
        # phase), and the phase's first sample covers its first interval
        # alone. On the free-running clock the first sample mixed up to an
        # interval from before the phase, and the host waited for a second.
        self.sample()
        self.phase = started
        self.next_tick = self.clock() + self.interval
        self.send(message("phase_started", phase_id=spec.phase_id, t=self.t()))

    def finish_phase(self, outcome: Outcome) -> None:
        self.phase = None
        spec = outcome.spec
        if outcome.error is not None:
            code, text = outcome.error
            self.send(self.error(spec.phase_id, code, text))
            return
        self.send(
            message(
                "phase_result",
                phase_id=spec.phase_id,
                kind=spec.kind,
                duration_s=outcome.duration_s,
                exit_code=outcome.exit_code,
                metrics=outcome.metrics,
            )
        )

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.phase is not None:
            self.finish_phase(self.phase.abort())
        self.send(message("bye"))

    # -- the loop ------------------------------------------------------------------------
    def sample(self) -> None:
        try:
            figures = self.sampler.sample()
        except (OSError, ValueError) as exc:
            log(f"sampling failed: {exc}")
            return
        phase_id = self.phase.spec.phase_id if self.phase is not None else None
        self.send(message("sample", phase_id=phase_id, t=self.t(), **figures), droppable=True)

    def step(self, next_tick: float) -> None:
        """Wait for I/O, the tool's exit or the next tick, and handle what happened."""
        now = self.clock()
        if not self.connected and now >= self._next_probe:
            if self.channel.peer_present():
                self.on_connect()
            else:
                self._next_probe = now + PROBE_S
        wake = next_tick
        poller = select.poll()
        if self.connected:
            self._flush()
        if self.connected:
            want_out = select.POLLOUT if self.outbox else 0
            if self.channel.rfd == self.channel.wfd:
                poller.register(self.channel.rfd, select.POLLIN | want_out)
            else:
                poller.register(self.channel.rfd, select.POLLIN)
                if want_out:
                    poller.register(self.channel.wfd, want_out)
        else:
            wake = min(wake, self._next_probe)
        if self.phase is not None:
            wake = min(wake, self.phase.wake_at())
            # The tool's pidfd; for an app also its server's and their output pipes.
            for fd in self.phase.filenos():
                poller.register(fd, select.POLLIN)
        events = poller.poll(max(0, int((wake - self.clock()) * 1000) + 1))
        if self.connected and any(fd == self.channel.rfd for fd, _ in events):
            self._read()
        if self.phase is not None:
            outcome = self.phase.poll()
            if outcome is not None:
                self.finish_phase(outcome)

    def _read(self) -> None:
        try:
            data = self.channel.read()
        except PeerGone as exc:
            self.on_disconnect(str(exc))
            return
        if data:
            self.feed(data)

    def _flush(self) -> None:
        try:
            self.outbox.flush(self.channel)
        except PeerGone as exc:
            self.on_disconnect(str(exc))

    def run(self) -> int:
        self.next_tick = self.clock() + self.interval
        failures = 0
        while not self.stopping:
            if self.stop_requested:
                self.stop()
                break
            try:
                self.step(self.next_tick)
                failures = 0
            except Exception as exc:
                # Dying powers the shadow off mid-run; survive a glitch, not a loop of them.
                failures += 1
                log(_format_exception(exc))
                if failures >= MAX_LOOP_FAILURES:
                    log("giving up after repeated failures")
                    return 1
                time.sleep(0.2)
            now = self.clock()
            if now >= self.next_tick:
                self.sample()
                self.next_tick += self.interval
                if self.next_tick <= now:  # fell behind (a stalled vCPU): skip, don't burst
                    self.next_tick = now + self.interval
        self._drain_outbox()
        return 0

    def _drain_outbox(self) -> None:
        """Give the last messages (bye) a bounded chance to reach the host."""
        give_up = self.clock() + FLUSH_AT_EXIT_S
        while self.connected and self.outbox and self.clock() < give_up:
            self._flush()
            if self.outbox:
                poller = select.poll()
                poller.register(self.channel.wfd, select.POLLOUT)
                poller.poll(100)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vmshadow.agent.guest", description=(__doc__ or "").split("\n")[0]
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stdio", action="store_true", help="talk over stdin/stdout")
    where.add_argument("--port", help="virtio-serial device, e.g. /dev/vport0p1")
    where.add_argument("--port-name", help="find the port by name, e.g. org.vmshadow.agent.0")
    parser.add_argument("--scratch", required=True, help="the only target fio may use")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--wait-port", type=float, default=60.0, help="seconds to wait for it")
    args = parser.parse_args(argv)
    if not 0.05 <= args.interval <= 60:
        parser.error("--interval must be within 0.05..60 seconds")
    if not os.path.isabs(args.scratch) or ":" in args.scratch:
        # fio reads ':' in --filename as a list separator.
        parser.error("--scratch must be an absolute path without ':'")
    return args


def _open_port(args: argparse.Namespace) -> Channel | None:
    """The port may appear a moment after boot (module loading): retry, then give up."""
    give_up = time.monotonic() + args.wait_port
    while True:
        path = args.port or find_port(args.port_name)
        if path is not None:
            try:
                return Channel.port(str(path))
            except OSError as exc:
                failure = f"{path}: {exc.strerror}"
        else:
            failure = f"no virtio-serial port named {args.port_name}"
        if time.monotonic() >= give_up:
            log(f"giving up after {args.wait_port:.0f} s: {failure}")
            return None
        time.sleep(0.5)


def _format_exception(exc: BaseException) -> str:
    # Imported here: traceback (with linecache and tokenize) costs a tenth of a
    # second of boot under TCG, and is needed only when something broke.
    import traceback

    return "".join(traceback.format_exception(exc))


def _uptime() -> str:
    """The machine's uptime, for boot-time diagnosis in the console log."""
    try:
        with open("/proc/uptime") as f:
            return f.read().split()[0] + " s"
    except OSError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.stdio:
        channel = Channel.stdio()
        sys.stdout = sys.stderr  # a stray print must never corrupt the protocol stream
    else:
        opened = _open_port(args)
        if opened is None:
            return 2
        channel = opened
    agent = Agent(channel, args.scratch, args.interval)

    def on_term(signum: int, frame: FrameType | None) -> None:
        # Only flag it: stopping kills the tool and must not interrupt the loop midway.
        agent.stop_requested = True

    signal.signal(signal.SIGTERM, on_term)
    log(
        f"agent {AGENT_VERSION} up (protocol {PROTOCOL_VERSION}, scratch {args.scratch}, "
        f"uptime {_uptime()})"
    )
    try:
        return agent.run()
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
