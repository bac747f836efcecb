"""Run an ``app`` phase: the user's own program, and optionally its server, in the shadow.

The phase is a small state machine driven by the agent's loop, like any
other phase (it never blocks the loop for long: sampling goes on):

1. the server (``server``) starts, if there is one;
2. with ``ready_port``, the phase waits (bounded) until 127.0.0.1:port
   accepts a connection;
3. the command runs with ``{rate}`` and ``{duration}`` filled in;
4. the server gets SIGTERM, then SIGKILL after ``SERVER_GRACE_S``;
5. ``achieved`` reads the achieved rate from the command's stdout.

Both run in sessions of their own (``appproc``; killed as process groups, like stress-ng
and fio), under the phase's hard limit (``phaserun.hard_limit_s``), as an
ordinary account (``user``, ``nobody`` by default) when the agent is root,
with the image's standard PATH and a clean environment: the agent's own
environment (its PYTHONPATH, the tools disk first on PATH) is no business of
the application's. Their output goes through pipes into bounded buffers (the
head and the tail), so a chatty program can neither fill the guest's disk
nor the agent's memory.

App phases run only in a shadow of a store image's own OS: vmshadow's
built-in shadow OS holds busybox, python3, stress-ng and fio, no
application, and has no ``/etc/os-release`` (every distribution's image
does), which is how the agent tells them apart (``Tools.app_os``).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable

from vmshadow.agent.appproc import (
    PORT_POLL_S,
    SERVER_GRACE_S,
    Account,
    Child,
    account_for,
    find_program,
    port_open,
    short_argv,
)
from vmshadow.agent.appspec import AppParams
from vmshadow.agent.phaserun import Outcome, PhaseStartError, Tools, hard_limit_s, oom_kills
from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.agent.tools import Metrics, ToolOutputError, parse_achieved

__all__ = ["RunningApp"]


class RunningApp:
    """An app phase in flight; create with ``start``. Same interface as ``RunningPhase``."""

    vmstat = "/proc/vmstat"

    def __init__(
        self,
        spec: PhaseSpec,
        params: AppParams,
        workdir: str,
        account: Account,
        os_text: str,
        clock: Callable[[], float],
    ) -> None:
        self.spec = spec
        self.params = params
        self._dir = workdir
        self._account = account
        self._os = os_text
        self._clock = clock
        self.started = clock()
        self.deadline = self.started + hard_limit_s(spec.duration_s)
        self._ready_by = self.deadline
        self._server: Child | None = None
        self._command: Child | None = None
        self._stop_by: float | None = None  # the server was told to stop; SIGKILL then
        self._ready_s: float | None = None
        self._program = ""  # the command's executable, run once the port is open
        self._command_started = 0.0
        self._command_s = 0.0
        self._oom_kills = oom_kills(self.vmstat)

    @classmethod
    def start(
        cls, spec: PhaseSpec, tools: Tools, clock: Callable[[], float] = time.monotonic
    ) -> RunningApp:
        params = spec.params
        assert isinstance(params, AppParams)
        if tools.app_os is None:
            raise PhaseStartError(
                "app_unavailable",
                "an app phase runs the profile's own program, which only a shadow of a store "
                "image's own OS has: this shadow runs vmshadow's built-in OS (no "
                "/etc/os-release; stress-ng and fio only)",
            )
        account = account_for(params.user)
        program = find_program(params.command[0])
        server = find_program(params.server[0]) if params.server is not None else None
        workdir = tempfile.mkdtemp(prefix=f"vmshadow-{spec.phase_id}-")
        app: RunningApp | None = None
        try:
            if account.uid is not None:
                os.chown(workdir, account.uid, account.gid if account.gid is not None else -1)
            app = cls(spec, params, workdir, account, tools.app_os, clock)
            server_argv = params.server_argv(spec.duration_s)
            if server is not None and server_argv is not None:
                app._server = app._spawn(server_argv, server, merge_stderr=True)
            if params.ready_port is None:
                app._start_command(program)
            else:
                app._ready_by = min(app.deadline, app.started + params.ready_timeout_s)
                app._program = program
            return app
        except BaseException:
            if app is not None:
                app._kill_all()
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _spawn(self, argv: list[str], executable: str, *, merge_stderr: bool) -> Child:
        return Child(
            argv, executable, cwd=self._dir, account=self._account, merge_stderr=merge_stderr
        )

    def _start_command(self, program: str) -> None:
        self._command_started = self._clock()
        self._command = self._spawn(
            self.params.argv(self.spec.duration_s), program, merge_stderr=False
        )

    # -- the loop's view ---------------------------------------------------------------
    def _children(self) -> list[Child]:
        return [c for c in (self._server, self._command) if c is not None]

    def filenos(self) -> list[int]:
        fds = []
        for child in self._children():
            if child.pidfd is not None:
                fds.append(child.pidfd)
            fds += [c.fd for c in child.captures() if c.fd is not None]
        return fds

    def fileno(self) -> int | None:
        return self._command.pidfd if self._command is not None else None

    def wake_at(self) -> float:
        now = self._clock()
        if self._command is None:
            return min(self._ready_by, now + PORT_POLL_S)
        wake = self.deadline if self._stop_by is None else min(self.deadline, self._stop_by)
        if any(c.pidfd is None for c in self._children()):
            wake = min(wake, now + 0.1)
        return wake

    def poll(self) -> Outcome | None:
        for child in self._children():
            for capture in child.captures():
                capture.drain()
        now = self._clock()
        try:
            return self._advance(now)
        except PhaseStartError as exc:  # the command could not start once the port opened
            return self._end((exc.code, exc.message))

    def _advance(self, now: float) -> Outcome | None:
        if now >= self.deadline:
            limit = hard_limit_s(self.spec.duration_s)
            return self._end(
                ("timeout", f"app ran past {limit:.0f} s and was killed; {self._ends()}")
            )
        server, port = self._server, self.params.ready_port
        if self._command is None:
            if server is not None and server.exited():
                code = server.reap()
                return self._end(
                    (
                        "tool_failed",
                        f"app.server {server.name} exited {code} before 127.0.0.1:{port} "
                        f"accepted a connection; it said: {server.out.ends()}",
                    )
                )
            if port is not None and port_open(port):
                self._ready_s = round(now - self.started, 3)
                self._start_command(self._program)
                return None
            if now >= self._ready_by:
                said = f"; app.server said: {server.out.ends()}" if server is not None else ""
                return self._end(
                    (
                        "app_not_ready",
                        f"nothing accepted connections on 127.0.0.1:{port} within "
                        f"{now - self.started:.0f} s{said}",
                    )
                )
            return None
        command = self._command
        if self._stop_by is None:
            if server is not None and server.exited():
                code = server.reap()
                return self._end(
                    (
                        "tool_failed",
                        f"app.server {server.name} exited {code} while the command ran (a "
                        f"server must stay in the foreground); it said: {server.out.ends()}",
                    )
                )
            if not command.exited():
                return None
            command.reap()
            self._command_s = round(now - self._command_started, 3)
            if server is None:
                return self._finish()
            server.signal_group(signal.SIGTERM)
            self._stop_by = now + SERVER_GRACE_S
        if server is not None and not server.exited() and now < self._stop_by:
            return None
        return self._finish()

    def stop_early(self) -> None:
        """Ignored: an application phase runs its length, since its achieved rate
        (read from the command's own report at its end) is the step's load."""

    def abort(self) -> Outcome:
        return self._end(("aborted", "the agent is shutting down"))

    # -- the end -----------------------------------------------------------------------
    def _kill_all(self) -> None:
        for child in (self._command, self._server):
            if child is not None:
                child.kill()
                child.close()

    def _end(self, error: tuple[str, str]) -> Outcome:
        self._kill_all()
        code = self._command.code if self._command is not None else None
        outcome = Outcome(self.spec, round(self._clock() - self.started, 3), code or 0)
        outcome.error = error
        shutil.rmtree(self._dir, ignore_errors=True)
        return outcome

    def _ends(self) -> str:
        command = self._command
        if command is None:
            return "the command never started"
        err = f"; stderr ends: {command.err.ends()}" if command.err is not None else ""
        return f"stdout ends: {command.out.ends()}{err}"

    def _finish(self) -> Outcome:
        command = self._command
        assert command is not None and command.code is not None
        if self._server is not None:
            self._server.reap()  # SIGKILL, if SIGTERM was not enough
        outcome = Outcome(self.spec, round(self._clock() - self.started, 3), command.code)
        try:
            outcome.error = self._judge(command)
            if outcome.error is None:
                outcome.metrics = self._metrics(command)
        except ToolOutputError as exc:
            outcome.error = ("bad_output", f"{exc}; {self._ends()}")
        finally:
            for child in self._children():
                child.close()
            shutil.rmtree(self._dir, ignore_errors=True)
        return outcome

    def _judge(self, command: Child) -> tuple[str, str] | None:
        before, after = self._oom_kills, oom_kills(self.vmstat)
        if before is not None and after is not None and after > before:
            return (
                "out_of_memory",
                f"the guest's OOM killer ended {after - before} process(es) during the "
                f"app phase: the application needs more memory than this guest has; "
                f"{self._ends()}",
            )
        if command.code != 0:
            return ("tool_failed", f"{command.name} exited {command.code}; {self._ends()}")
        return None

    def _metrics(self, command: Child) -> Metrics:
        p = self.params
        raw = parse_achieved(command.out.parts(), p)
        return {
            "achieved_per_s": round(raw * p.unit_scale, 6),
            "achieved_raw": raw,
            "unit_scale": p.unit_scale,
            "asked_per_s": p.rate,
            "command": short_argv(p.command),
            "server": short_argv(p.server) if p.server is not None else None,
            "user": self._account.name,
            "os": self._os,
            "ready_s": self._ready_s,
            "command_s": self._command_s,
            "stdout_bytes": command.out.total,
            "stderr_bytes": command.err.total if command.err is not None else 0,
        }
