"""The one way the image builders run a command: argv only, never a shell, and
a failure an ImageError naming the command, its exit code and its stderr's tail."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from vmshadow.domain.errors import ImageError

# A slow registry mirror is the usual reason a step takes long; a hung one
# must not hang the build (or a test) for ever.
COMMAND_TIMEOUT_S = 1800


def run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Run one command and return its stdout."""
    command = " ".join(argv)
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise ImageError(f"{argv[0]} is not installed: run ./scripts/setup") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{command} did not finish within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise ImageError(f"{command} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout
