"""Commands that talk to the running service over its REST API:
``launch``, ``resize``, ``attach``, ``ls``, ``show``, ``cancel``.

The service is found at ``VMSHADOW_URL`` / ``client.url``, else where
``vmshadow serve`` listens with the same settings (``api.host``/``api.port``);
the token is ``VMSHADOW_TOKEN`` / ``client.token``, else the ``api-token``
file the service keeps in its data folder. ``--json`` prints the API's own
document on stdout (progress and prompts then go to stderr).

Exit codes: 0 done (for launch: the VM runs); 1 the service refused (its
quotas, host, profiles, images; a name taken; a conflict), declined, or the
transition failed or was cancelled; 2 bad usage, found before the service is
contacted (``cli/checks.py``); 3 the service cannot be reached; 130 interrupted.
Ctrl-C never cancels: the transition goes on in the service, and the message
says how to attach to it again or cancel it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.apiclient import ApiClient, ApiError, ServiceUnreachable, client_config
from vmshadow.cli.guestflags import (
    DiskOpt,
    NetworkOpt,
    SshKeyOpt,
    UserDataOpt,
    UserOpt,
    guest_fields,
)
from vmshadow.cli.launch import drive
from vmshadow.cli.progress import Ui
from vmshadow.cli.views import (
    size_text,
)
from vmshadow.config import load_settings
from vmshadow.domain.errors import VmshadowError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
PANEL = "Transitions (through the running service)"
T = TypeVar("T")

out = Console()
err = Console(stderr=True)

# API field -> the flag a user typed, so an error names what they can change.
FLAGS = {
    "vm_name": "NAME",
    "name": "NAME",
    "requested": "--cpus/--memory",
    "requested.vcpus": "--cpus",
    "vcpus": "--cpus",
    "requested.memory_mib": "--memory",
    "memory_mib": "--memory",
    "requested.iops": "--iops",
    "iops": "--iops",
    "load": "--load",
    "profile": "--profile",
    "image": "--image",
    "scheduled_at": "--at",
    "network": "--network",
    "user": "--user",
    "ssh_keys": "--ssh-key",
    "user_data": "--user-data",
    "disk_gib": "--disk",
}

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON document on stdout (for scripts).")
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The service, e.g. http://127.0.0.1:8600 (default: VMSHADOW_URL, client.url, "
        "else api.host:api.port).",
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    str, typer.Option(help="Workload profile the shadow runs (`vmshadow profile list`).")
]
LoadOpt = Annotated[
    float | None, typer.Option(help="Expected load, in the profile's unit (e.g. requests/s).")
]
IopsOpt = Annotated[int | None, typer.Option(help="Disk IOPS cap asked for (default: no cap).")]
FastOpt = Annotated[
    bool, typer.Option("--fast", help="Fast launch: go ahead as soon as the prediction exists.")
]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="Who decides once predicted: manual, fast, or auto-within:PCT (confirmed "
        "on its own when within PCT % of the size asked).",
    ),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Accept the recommendation without asking.")
]


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    # Messages carry the service's reasons and the user's input: text, not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=code)


def _explain(exc: ApiError, flags: dict[str, str] | None) -> str:
    name = (flags or {}).get(exc.field or "", exc.field)
    return f"{name}: {exc.reason}" if name else str(exc)


@contextmanager
def _api(url: str | None, flags: dict[str, str] | None = None) -> Iterator[ApiClient]:
    """A client for one command; every error becomes one line and an exit code."""
    try:
        config = client_config(load_settings({("client", "url"): url}))
        with ApiClient(config) as api:
            yield api
    except check.BadUsage as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except ServiceUnreachable as exc:
        raise _fail(str(exc), EXIT_UNREACHABLE) from None
    except ApiError as exc:
        raise _fail(_explain(exc, flags)) from None
    except VmshadowError as exc:
        raise _fail(str(exc)) from None


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


# -- launch, resize, attach ----------------------------------------------------------------
def launch(
    name: Annotated[str, typer.Argument(help="Name of the new VM (its libvirt domain).")],
    profile: ProfileOpt,
    load: LoadOpt = None,
    cpus: Annotated[int, typer.Option(help="vCPUs you would ask for.")] = 2,
    memory: Annotated[str, typer.Option(help="Memory you would ask for: 4G, 512M, MiB.")] = "2G",
    iops: IopsOpt = None,
    image: Annotated[
        str, typer.Option(help="'builtin' or the name of an image in the image store.")
    ] = "builtin",
    at: Annotated[
        str | None,
        typer.Option("--at", help="When the VM should run (ISO 8601); the shadow starts early."),
    ] = None,
    fast: FastOpt = False,
    policy: PolicyOpt = None,
    network: NetworkOpt = None,
    user: UserOpt = None,
    ssh_key: SshKeyOpt = None,
    user_data: UserDataOpt = None,
    disk: DiskOpt = None,
    yes: YesOpt = False,
    json_out: JsonFlag = False,
    url: UrlOpt = None,
) -> None:
    """Right-size and launch a new VM: shadow -> prediction -> your decision -> running.

    Shows the requested size against the recommendation, then asks
    `Launch with the recommendation? [Y/n/o]`: y confirms, n cancels (nothing
    is launched), o overrides (pre-filled with the recommendation; a size below
    the predicted need is launched only after you accept the risk).
    """
    body: dict[str, Any] = _checked(
        lambda: {
            "kind": "launch",
            "vm_name": check.vm_name(name),
            "profile": profile,
            "image": check.image_name(image),
            "requested": {
                "vcpus": check.vcpus(cpus),
                "memory_mib": check.vm_memory(memory),
                "iops": check.iops(iops),
            },
            "fast_launch": fast,
            **guest_fields(network, user, ssh_key, user_data, disk),
        }
    )
    if load is not None:
        body["load"] = _checked(lambda: check.load(load))
    if at is not None:
        body["scheduled_at"] = _checked(lambda: check.when(at))
    if policy is not None:
        body["policy"] = policy  # checked by the service, which names the field
    _run(body, yes=yes, json_out=json_out, url=url)


def resize(
    name: Annotated[str, typer.Argument(help="A VM vmshadow launched.")],
    profile: ProfileOpt,
    load: LoadOpt = None,
    cpus: Annotated[
        int | None, typer.Option(help="vCPUs you would resize to (default: the current).")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory you would resize to (default: the current).")
    ] = None,
    iops: IopsOpt = None,
    fast: FastOpt = False,
    policy: PolicyOpt = None,
    yes: YesOpt = False,
    json_out: JsonFlag = False,
    url: UrlOpt = None,
) -> None:
    """Right-size a VM vmshadow manages: the shadow runs the profile again, the
    prediction says whether the new size applies live or needs a restart."""
    body: dict[str, Any] = {"kind": "resize", "vm_name": name, "profile": profile}
    if (cpus is None) != (memory is None):
        raise _fail(
            "--cpus/--memory: give both, or neither to start from the current size", EXIT_USAGE
        )
    if cpus is not None and memory is not None:
        body["requested"] = _checked(
            lambda: {
                "vcpus": check.vcpus(cpus),
                "memory_mib": check.vm_memory(memory),
                "iops": check.iops(iops),
            }
        )
    if load is not None:
        body["load"] = _checked(lambda: check.load(load))
    body["fast_launch"] = fast
    if policy is not None:
        body["policy"] = policy
    _run(body, yes=yes, json_out=json_out, url=url)


def attach(
    tid: Annotated[str, typer.Argument(metavar="ID", help="Transition ID (`vmshadow ls`).")],
    yes: YesOpt = False,
    json_out: JsonFlag = False,
    url: UrlOpt = None,
) -> None:
    """Follow a transition again (after Ctrl-C, or one made elsewhere) and decide
    when it waits for you, as `launch` does."""
    _run(None, tid=tid, yes=yes, json_out=json_out, url=url)


def _checked(fn: Callable[[], T]) -> T:
    """Run local checks of the input; bad usage is one line and exit code 2."""
    try:
        return fn()
    except check.BadUsage as exc:
        raise _fail(str(exc), EXIT_USAGE) from None


def _run(
    body: dict[str, Any] | None,
    *,
    tid: str | None = None,
    yes: bool,
    json_out: bool,
    url: str | None,
) -> None:
    ui = Ui(err if json_out else out, yes=yes, to_stderr=json_out)
    with _api(url, FLAGS) as api:
        try:
            if body is not None:
                created = api.create(body)
                tid = created["id"]
                ui.print(
                    f"transition [bold]{escape(str(tid))}[/]: "
                    + escape(
                        f"{created['kind']} {created['vm_name']}, "
                        f"requested {size_text(created['requested'])}"
                    )
                )
            else:
                assert tid is not None
                # Say what is followed: an ID alone does not tell which VM a decision is for.
                now = api.get(tid)
                ui.print(
                    f"following transition [bold]{escape(str(tid))}[/]: "
                    + escape(f"{now['kind']} {now['vm_name']}, {now['state']}")
                )
            assert tid is not None
            doc = drive(api, tid, ui)
        except KeyboardInterrupt:
            if tid is None:
                raise _fail(
                    "interrupted before the service answered: `vmshadow ls` shows whether "
                    "the transition was made",
                    EXIT_INTERRUPTED,
                ) from None
            err.print(
                "\n[yellow]interrupted:[/] "
                + escape(
                    f"transition {tid} goes on in the service. `vmshadow attach {tid}` "
                    f"follows it again, `vmshadow cancel {tid}` stops it."
                )
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except click.exceptions.Abort as exc:
            # stdin closed (a script without --yes): leave the decision open, say how.
            err.print(
                "\n[yellow]no answer:[/] "
                + escape(
                    f"transition {tid} waits for a decision. "
                    f"`vmshadow attach {tid}` to decide, or run with --yes."
                )
            )
            raise typer.Exit(EXIT_FAILED) from exc
    if json_out:
        _print_json(doc)
    _summary(ui, doc)
    if doc["state"] not in ("running", "completed"):
        raise typer.Exit(EXIT_FAILED)


def _summary(ui: Ui, doc: dict[str, Any]) -> None:
    tid, state = doc["id"], doc["state"]
    if state in ("running", "completed"):
        how = doc.get("decision") or "-"
        verb = "resized to" if doc["kind"] == "resize" else "running with"
        ui.print(
            "[bold green]done:[/] "
            + escape(
                f"VM {doc['vm_name']} {verb} {size_text(doc.get('final'))} ({how}); it is "
                f"observed to teach the predictor. `vmshadow show {tid}` for details."
            )
        )
    elif state == "failed":
        reason = doc.get("reason") or "see show"
        ui.print(f"[bold red]failed:[/] {escape(f'transition {tid}: {reason}')}")
    elif state == "cancelled":
        ui.print(Text(f"transition {tid} was cancelled"))
    else:
        ui.print(Text(f"transition {tid} is {state}"))


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``vmshadow`` app."""
    from vmshadow.cli.lookup import cancel, ls, show  # they use this module's helpers

    for fn in (launch, resize, attach, ls, show, cancel):
        app.command(rich_help_panel=PANEL)(fn)
