"""The ``vmshadow`` command: the Typer app every command is registered on.

Which module holds which command is listed in ``cli/__init__.py``. This
module adds what the whole command line shares:
``--version``, ``-h``, shell completion, one-line usage errors (exit 2), and
the two small host commands ``doctor`` and ``serve``.
"""

from __future__ import annotations

import json
from importlib.metadata import version as package_version
from typing import Annotated, Any

import click
import typer
import typer.core
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from vmshadow.cli.common import (
    EXIT_USAGE,
    JsonFlag,
    UriOpt,
    err,
    fail,
    guarded,
    out,
    settings_for,
)
from vmshadow.cli.images import image_app
from vmshadow.cli.plan import plan
from vmshadow.cli.predict import history_app, model_app
from vmshadow.cli.profiles import profile_app
from vmshadow.cli.shadow import shadow_app
from vmshadow.cli.token import token_app
from vmshadow.cli.transitions import register as register_transition_commands
from vmshadow.cli.vms import register as register_vm_commands
from vmshadow.config import load_settings
from vmshadow.doctor import run_doctor
from vmshadow.domain.errors import VmshadowError


def _flag(param: click.Parameter) -> str:
    """How the user typed it: '--cpus' for an option, 'NAME' for an argument."""
    if isinstance(param, click.Option):
        return next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return param.human_readable_name


def usage_line(exc: click.UsageError) -> str:
    """Click's usage error as ``FLAG: reason`` (the one line ``error:`` prints)."""
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        return f"{_flag(exc.param)}: required"
    if isinstance(exc, click.BadParameter) and exc.param is not None:
        return f"{_flag(exc.param)}: {exc.message}"
    if isinstance(exc, click.NoSuchOption):
        hint = f" (did you mean {' or '.join(exc.possibilities)}?)" if exc.possibilities else ""
        return f"{exc.option_name}: no such option{hint}"
    if isinstance(exc, click.BadOptionUsage):
        return f"{exc.option_name}: {exc.message}"
    text = exc.format_message()
    return text[:1].lower() + text[1:]


def _hide_none_defaults(command: click.Command) -> None:
    # "[default: None]" says nothing: every option without a default gets its
    # meaning from its help text. Done here, for every command, so a new option
    # cannot bring the noise back.
    for param in command.params:
        if param.default is None and isinstance(param, click.Option | typer.core.TyperArgument):
            param.show_default = False
    for sub in getattr(command, "commands", {}).values():
        _hide_none_defaults(sub)


class _Vmshadow(typer.core.TyperGroup):
    """The top-level group: bad usage anywhere below it is one line and exit 2.

    Typer would draw a framed usage box; scripts and people want one line that
    names the option, like the errors the commands print themselves."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        _hide_none_defaults(self)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _usage_exit(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_exit(exc) from None


def _usage_exit(exc: click.UsageError) -> click.exceptions.Exit:
    err.print(f"[bold red]error:[/] {escape(usage_line(exc))}", highlight=False)
    return click.exceptions.Exit(EXIT_USAGE)


app = typer.Typer(
    cls=_Vmshadow,
    no_args_is_help=True,
    # `vmshadow --install-completion` / `--show-completion` (docs/cli.md).
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vmshadow {package_version('vmshadow')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print vmshadow's version and exit.",
        ),
    ] = False,
) -> None:
    """Right-size libvirt VMs before they launch: vmshadow boots a tiny shadow VM,
    runs your workload profile in it and recommends vCPUs, memory and an IOPS cap.

    Check the host with `vmshadow doctor`, start the service with `vmshadow serve`,
    then `vmshadow launch NAME --profile web` right-sizes and launches a VM
    (`vmshadow plan` only predicts). `vmshadow COMMAND -h` for each command.
    """


app.add_typer(image_app, name="image")
app.add_typer(shadow_app, name="shadow")
app.add_typer(profile_app, name="profile")
app.add_typer(history_app, name="history")
app.add_typer(model_app, name="model")
app.add_typer(token_app, name="token")  # token show [--link]
register_transition_commands(app)  # launch, resize, attach, ls, show, cancel
register_vm_commands(app)  # vm ls, vm delete


# -- doctor ----------------------------------------------------------------------------
@app.command()
def doctor(json_out: JsonFlag = False, uri: UriOpt = None) -> None:
    """Check libvirt, QEMU, the accelerator, the image and host capacity."""
    report = guarded(lambda: run_doctor(settings_for(uri)))
    if json_out:
        out.print_json(json.dumps(report))
    else:
        table = Table(title="vmshadow doctor", show_header=False)
        marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
        for check in report["checks"]:
            status = check.get("status") or ("ok" if check["ok"] else "fail")
            table.add_row(marks[status], Text(check["name"]), Text(check["detail"]))
        out.print(table)
        for check in report["checks"]:
            # A warning (a busy host) is worth reading but leaves the exit code 0.
            colour = "yellow" if check["ok"] else "red"
            if check.get("fix"):
                out.print(f"[{colour}]{escape(check['name'])}[/]: {escape(check['fix'])}")
    if not report["ok"]:
        raise typer.Exit(code=1)


app.command()(plan)  # listed in --help in the order of definition: doctor, plan, serve


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="TCP port (default 8600).")
    ] = None,
    uri: UriOpt = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error (default info; [log] level)."),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="text or json: one JSON object per line, access log included."),
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            help="all: the API and the controller; api or controller: that one alone "
            "(the others run elsewhere on the same database)."
        ),
    ] = "all",
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="API worker processes (default 2; [api] workers)."),
    ] = None,
) -> None:
    """Run the service: the REST API (and web UI) with the transition controller,
    as processes a supervisor keeps running."""
    from vmshadow.server import serve as run_service

    if role not in ("all", "api", "controller"):
        raise typer.BadParameter("all, api or controller", param_hint="--role")
    overrides: dict[tuple[str, ...], Any] = {
        ("api", "host"): host,
        ("api", "port"): port,
        ("api", "workers"): workers,
        ("log", "level"): log_level,
        ("log", "format"): log_format,
    }
    if uri:
        overrides[("libvirt_uri",)] = uri
    settings = guarded(lambda: load_settings(overrides))
    try:
        # Not under guarded(): the supervisor handles SIGTERM itself (it stops its children).
        run_service(settings, role=role)  # type: ignore[arg-type]
    except VmshadowError as exc:
        raise fail(exc) from exc


def main() -> None:
    app()
