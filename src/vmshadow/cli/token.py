"""``vmshadow token``: where the API token is, and a signed-in link to the web UI.

``vmshadow serve`` never prints the token (its output ends up in logs that
others can read); the operator who may read the token file asks for it here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vmshadow.config import load_settings

token_app = typer.Typer(no_args_is_help=True, help="The API token of this host's service.")


@token_app.command("show")
def show(
    link: Annotated[
        bool, typer.Option("--link", help="Print a signed-in web UI link instead.")
    ] = False,
) -> None:
    """Print the API token (or, with --link, a link that signs the browser in)."""
    from vmshadow.server import base_url  # the service's modules load only when needed

    settings = load_settings()
    path = settings.token_file
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        typer.echo(f"error: no token file {path}: start `vmshadow serve` once", err=True)
        raise typer.Exit(code=1) from None
    except PermissionError:
        typer.echo(f"error: cannot read {path} (mode 0600): run as its owner", err=True)
        raise typer.Exit(code=1) from None
    if not token:
        typer.echo(f"error: {path} is empty", err=True)
        raise typer.Exit(code=1)
    if link:
        # A URL fragment is never sent to the server: the sign-in page reads it.
        url = settings.client.url or base_url(settings)
        typer.echo(f"{url.rstrip('/')}/login#token={token}")
    else:
        typer.echo(token)
