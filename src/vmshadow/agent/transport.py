"""Byte transports to an agent, seen from the host.

``Transport`` is what ``AgentClient`` needs: the libvirt adapter provides one
over the channel's unix socket; ``SubprocessTransport`` runs the agent as a
child process in ``--stdio`` mode (tests, and running a "shadow" as a plain
host process).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

STOP_GRACE_S = 5.0


class Transport(Protocol):
    def send(self, data: bytes) -> None:
        """Send all of ``data``."""

    def recv(self, max_bytes: int, timeout: float) -> bytes:
        """Up to ``max_bytes``; b"" at end of stream; raises ``TimeoutError`` on timeout."""
        ...

    def close(self) -> None: ...


class SubprocessTransport:
    """The agent's stdin/stdout as a transport; its stderr goes to a temporary file."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        # Kept open for the transport's lifetime and closed in close(), hence no `with`.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=None if env is None else dict(env),
                cwd=cwd,
                bufsize=0,
            )
        except BaseException:
            self._stderr.close()
            raise
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin
        self._stdout = self.process.stdout
        self._closing = False
        self._closed = False
        self._stderr_tail = ""

    @classmethod
    def agent(
        cls,
        scratch: str,
        *,
        interval_s: float = 1.0,
        python: Sequence[str] = (sys.executable,),
        env: Mapping[str, str] | None = None,
    ) -> SubprocessTransport:
        """``python -m vmshadow.agent.guest --stdio`` with the given scratch file."""
        argv = [*python, "-m", "vmshadow.agent.guest", "--stdio", "--scratch", scratch]
        return cls([*argv, "--interval", str(interval_s)], env=env)

    def send(self, data: bytes) -> None:
        # A pipe write blocks only while the agent is busy; the agent reads
        # continuously, and a dead agent gives BrokenPipeError (a ConnectionError).
        self._stdin.write(data)
        self._stdin.flush()

    def recv(self, max_bytes: int, timeout: float) -> bytes:
        fd = self._stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        if not ready:
            raise TimeoutError(f"no data from the agent process within {timeout:.1f} s")
        return os.read(fd, max_bytes)

    def stderr_text(self, limit: int = 4000) -> str:
        """The tail of what the agent logged (for error messages and test failures)."""
        if self._closed:
            return self._stderr_tail[-limit:]
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-limit:].decode(errors="replace")

    def close(self) -> None:
        """Close stdin (the agent exits on EOF), then wait, terminate, kill. Idempotent."""
        if self._closed or self._closing:
            return
        self._closing = True
        with contextlib.suppress(OSError):  # broken pipe: the agent is already gone
            self._stdin.close()
        try:
            self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.close()
        self._stderr_tail = self.stderr_text()
        self._closed = True
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
