"""``vmshadow image build`` and ``vmshadow image status``: the shadow base image."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from vmshadow.cli.common import JsonFlag, err, guarded, out, settings_for
from vmshadow.image.builder import build_image, find_image, list_images
from vmshadow.image.testcloud import build_test_cloud_image

image_app = typer.Typer(no_args_is_help=True, help="Build and inspect the shadow base image.")


@image_app.command("build")
def image_build(
    force: Annotated[bool, typer.Option(help="Rebuild even if inputs are unchanged.")] = False,
    test_cloud: Annotated[
        bool,
        typer.Option(
            "--test-cloud",
            help="Build the Debian 12 test cloud image instead (needs root); print its path.",
        ),
    ] = False,
) -> None:
    """Build the shadow base image from Debian packages (cached by its inputs)."""
    settings = settings_for()
    if test_cloud:
        image = guarded(
            lambda: build_test_cloud_image(
                settings.data_dir, force=force, log=lambda m: err.print(Text(f"  {m}"))
            )
        )
        # The path alone on stdout, unwrapped, for scripts: IMG=$(vmshadow image build ...).
        typer.echo(str(image.path))
        return
    files = guarded(
        lambda: build_image(
            settings.images_dir, force=force, log=lambda m: err.print(Text(f"  {m}"))
        )
    )
    out.print(Text(f"{files.directory}  {files.size_bytes() / 2**20:.0f} MiB"))


@image_app.command("status")
def image_status(json_out: JsonFlag = False) -> None:
    """List built images and say which one matches today's inputs."""
    settings = settings_for()
    current = guarded(lambda: find_image(settings.images_dir))
    rows = [
        {
            "digest": img.directory.name,
            "current": current is not None and img.directory == current.directory,
            "complete": img.complete(),
            "size_mib": round(img.size_bytes() / 2**20, 1) if img.complete() else None,
            "built_at": img.manifest.get("built_at"),
            "path": str(img.directory),
        }
        for img in list_images(settings.images_dir)
    ]
    if json_out:
        out.print_json(json.dumps(rows))
        return
    table = Table("digest", "current", "size MiB", "built at", "path")
    for r in rows:
        table.add_row(
            *(Text(str(v)) for v in (r["digest"], "yes" if r["current"] else "", r["size_mib"])),
            Text(str(r["built_at"])),
            Text(str(r["path"])),
        )
    out.print(table)
