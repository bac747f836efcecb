"""The processes of an ``app`` phase: how they are found, started, watched, stopped
and heard (``apprun.RunningApp`` drives them through the phase).

Each program runs in a session of its own (killed as a process group, like
stress-ng and fio), as an ordinary account when the agent is root, with the
image's standard PATH and a clean environment, and speaks into pipes whose
output is kept bounded: the first ``HEAD_BYTES`` and the last ``TAIL_BYTES``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

from vmshadow.agent.phaserun import KILL_GRACE_S, PhaseStartError

# What a login shell of the image would search: the image's programs, not the tools disk.
APP_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
PORT_POLL_S = 0.2
SERVER_GRACE_S = 5.0  # a database flushes on SIGTERM; it gets this long before SIGKILL
TAIL_CHARS = 600


def short_argv(argv: tuple[str, ...], arg_chars: int = 40, total: int = 256) -> str:
    """An argv on one short line, for a result (an inline script is cut, not quoted)."""
    parts = [" ".join(a.split()) for a in argv]
    parts = [a if len(a) <= arg_chars else a[: arg_chars - 3] + "..." for a in parts]
    return " ".join(parts)[:total]


class Capture:
    """A pipe's output, kept as its first ``HEAD_BYTES`` and its last ``TAIL_BYTES``."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd: int | None = fd
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def drain(self) -> None:
        """Read what is there now; closes the pipe at its end."""
        while self.fd is not None:
            try:
                data = os.read(self.fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self.total += len(data)
            room = HEAD_BYTES - len(self.head)
            self.head += data[:room]
            self.tail += data[room:] if room > 0 else data
            if len(self.tail) > TAIL_BYTES:
                del self.tail[: len(self.tail) - TAIL_BYTES]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def parts(self) -> list[str]:
        """Head and tail as text, separately: a line never runs across the gap."""
        return [bytes(b).decode(errors="replace") for b in (self.head, self.tail) if b]

    def ends(self) -> str:
        """The last lines, on one line, for an error message."""
        text = "\n".join(self.parts())[-TAIL_CHARS:]
        return " | ".join(ln.strip() for ln in text.splitlines() if ln.strip()) or "(nothing)"


@dataclass(frozen=True)
class Account:
    """Whom the application runs as; ``uid`` None: as the agent itself."""

    name: str
    uid: int | None = None
    gid: int | None = None


def account_for(user: str) -> Account:
    if os.geteuid() != 0:
        # An unprivileged agent (a host-process test) cannot switch users, and
        # already is an ordinary account: the application runs as it.
        uid = os.geteuid()
        try:
            return Account(pwd.getpwuid(uid).pw_name)
        except KeyError:
            return Account(str(uid))
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PhaseStartError(
            "no_user",
            f"app.user {user!r} does not exist in the guest: name an account of the image "
            "(the default, nobody, is in every Debian and Ubuntu image)",
        ) from None
    if entry.pw_uid == 0:
        raise PhaseStartError("no_user", f"app.user {user!r} is uid 0 in the guest: refused")
    return Account(user, entry.pw_uid, entry.pw_gid)


def find_program(program: str) -> str:
    if program.startswith("/"):
        if os.path.isfile(program) and os.access(program, os.X_OK):
            return program
        raise PhaseStartError("tool_missing", f"{program}: no such executable in the guest")
    found = shutil.which(program, path=APP_PATH)
    if found is None:
        raise PhaseStartError(
            "tool_missing", f"{program} is not installed in the guest (PATH {APP_PATH})"
        )
    return found


def port_open(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port (loopback answers at once)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PORT_POLL_S):
            return True
    except OSError:
        return False


class Child:
    """One program in a session of its own, watched through a pidfd."""

    def __init__(
        self,
        argv: list[str],
        executable: str,
        *,
        cwd: str,
        account: Account,
        merge_stderr: bool,
    ) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = (None, None) if merge_stderr else os.pipe()
        env = {
            "PATH": APP_PATH,
            "HOME": cwd,
            "TMPDIR": cwd,
            "LANG": "C.UTF-8",
            "USER": account.name,
            "LOGNAME": account.name,
        }
        try:
            self.proc = subprocess.Popen(
                argv,
                executable=executable,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=subprocess.STDOUT if err_w is None else err_w,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
                user=account.uid,
                group=account.gid,
                # Root's supplementary groups must not come along.
                extra_groups=[] if account.uid is not None else None,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            for fd in (out_r, err_r):
                if fd is not None:
                    os.close(fd)
            raise PhaseStartError("tool_failed", f"cannot run {argv[0]}: {exc}") from None
        finally:
            for fd in (out_w, err_w):
                if fd is not None:
                    os.close(fd)
        self.name = argv[0]
        self.out = Capture(out_r)
        self.err = Capture(err_r) if err_r is not None else None
        try:
            self.pidfd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None
        self.code: int | None = None

    def captures(self) -> list[Capture]:
        return [c for c in (self.out, self.err) if c is not None]

    def exited(self) -> bool:
        if self.code is not None:
            return True
        try:
            # WNOWAIT, as in phaserun: the group id stays ours until the SIGKILL.
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.code is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def kill(self, grace_s: float = KILL_GRACE_S) -> int:
        """SIGTERM, a grace to exit, then SIGKILL for the whole group; the exit code."""
        self.signal_group(signal.SIGTERM)
        give_up = time.monotonic() + grace_s
        while not self.exited() and time.monotonic() < give_up:
            time.sleep(0.05)
        return self.reap()

    def reap(self) -> int:
        if self.code is None:
            self.signal_group(signal.SIGKILL)  # workers left behind by a dead parent
            self.code = self.proc.wait()
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
            for c in self.captures():
                c.drain()
        return self.code

    def close(self) -> None:
        for c in self.captures():
            c.close()
