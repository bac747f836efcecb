"""What every host command shares: the consoles, the options, one-line errors.

Thin on purpose: each command loads the settings once, calls one use case
and renders its result as a table, or as one JSON document with ``--json``.
Errors are shown as one line naming what failed, never as a traceback; bad
usage (``checks.BadUsage``) exits 2, a failure 1, an interrupt 130.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from vmshadow.cli import checks as check
from vmshadow.config import Settings, load_settings
from vmshadow.domain.errors import VmshadowError

EXIT_USAGE = 2
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
# As virsh's -c: overrides libvirt_uri from the config file and VMSHADOW_LIBVIRT_URI.
UriOpt = Annotated[
    str | None,
    typer.Option(
        "--connect",
        "-c",
        metavar="URI",
        help="libvirt URI, as virsh -c (default: libvirt_uri from the config or "
        "VMSHADOW_LIBVIRT_URI, else qemu:///system).",
    ),
]


def settings_for(uri: str | None = None) -> Settings:
    """The layered settings, with ``-c/--connect`` on top when given."""
    return load_settings({("libvirt_uri",): uri})


def fail(exc: BaseException) -> typer.Exit:
    # escape: messages quote user input such as an fio job's "[section]", not markup.
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(code=1)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so every cleanup path runs for both."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def guarded(fn: Callable[[], T]) -> T:
    try:
        with _sigterm_as_interrupt():
            return fn()
    except check.BadUsage as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=EXIT_USAGE) from None
    except VmshadowError as exc:
        raise fail(exc) from exc
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: the shadow and its disks were destroyed[/]")
        raise typer.Exit(code=130) from None
