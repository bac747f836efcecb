"""``vmshadow image``: the shadow base image (``build``, ``status``) and the image
store of users' VM images (``add``, ``ls``, ``rm``, ``pool``).

The store commands work on this host, with no service running: they read the
same settings, open libvirt themselves (``-c``) and the database for the
transitions that name an image. What they do is ``image.catalog``'s, shared
with ``/api/v1/images``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from vmshadow.cli import checks as check
from vmshadow.cli.common import JsonFlag, UriOpt, err, guarded, out, settings_for
from vmshadow.config import Settings
from vmshadow.domain.errors import ConfigError, ConflictError
from vmshadow.hypervisor.pool import pool_from_settings
from vmshadow.image.builder import build_image, find_image, list_images
from vmshadow.image.catalog import ImageCatalog, ImageHost, ImageInfo, Users, image_users
from vmshadow.image.importing import check_default_user, check_new_name, check_os_variant
from vmshadow.image.testcloud import build_test_cloud_image

T = TypeVar("T")
image_app = typer.Typer(
    no_args_is_help=True,
    help="Build the shadow base image; add, list and remove images of the image store.",
)


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


@image_app.command("template")
def image_template(uri: UriOpt = None) -> None:
    """Save the built-in image's template now, so that no shadow waits for it.

    Boots one shadow; with no template of the current inputs it is saved from
    that shadow (otherwise the shadow is restored from the one there)."""
    from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
    from vmshadow.shadow.accelerator import accelerator_for
    from vmshadow.shadow.session import ShadowSession, require_image, session_options

    settings = settings_for(uri)

    def go() -> str:
        image = require_image(settings)
        options = session_options(settings)
        if options["templates"] is None:
            raise ConfigError("shadow.templates", "templates are off in the settings")
        with LibvirtHypervisor(settings.libvirt_uri) as hv:
            choice = accelerator_for(hv, image, settings)
            with ShadowSession(
                hv, image, settings.runs_dir, accelerator=choice.accelerator, **options
            ) as shadow:
                return shadow.record.boot_text()

    out.print(Text(guarded(go)))


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


# -- the image store ---------------------------------------------------------------------
# The catalogue's field names, as the user typed them on this command line.
_ARGS = {"name": "NAME", "file": "FILE", "os_variant": "--os-variant"}
_ARGS["default_user"] = "--default-user"


def _relabelled(fn: Callable[[], T]) -> T:
    """``fn``, with the catalogue's errors naming the argument or flag instead of the field."""
    try:
        return fn()
    except check.BadUsage:
        raise
    except ConfigError as exc:
        raise ConfigError(_ARGS.get(exc.field, exc.field), exc.reason) from None
    except ConflictError as exc:
        field, sep, reason = str(exc).partition(": ")
        if sep and field in _ARGS:
            raise ConflictError(f"{_ARGS[field]}: {reason}") from None
        raise


def _typed(**values: tuple[Callable[[Any], object], object]) -> None:
    """What was typed, checked before anything is opened: wrong on any host, exit 2."""
    for field, (fn, value) in values.items():
        try:
            fn(value)
        except ConfigError as exc:
            raise check.BadUsage(_ARGS[field], exc.reason) from None


@contextmanager
def _hosts(settings: Settings) -> Iterator[tuple[ImageHost, list[ImageHost]]]:
    """The host the store is on (the pool's first) and every host, for who uses an image."""
    pool = pool_from_settings(settings)
    try:
        yield pool.connect(), [pool.connect(n) for n in pool.names]
    finally:
        pool.close()


def _users(settings: Settings, catalog: ImageCatalog, hosts: list[ImageHost]) -> dict[str, Users]:
    from vmshadow.store.db import make_engine, migrate
    from vmshadow.store.repository import Store

    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        return image_users(catalog.store_dir, hosts, Store(engine))
    finally:
        engine.dispose()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _summary(info: ImageInfo) -> str:
    return (
        f"{info.name}: {info.format}, {_size(info.virtual_size)} virtual, "
        f"{_size(info.file_size)} on disk, sha256 {info.sha256}; os variant "
        f"{info.os_variant or '-'}, default user {info.default_user or '-'}"
    )


@image_app.command("add")
def image_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Its name in the store.")],
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A qcow2 or raw image file.")],
    os_variant: Annotated[
        str | None, typer.Option("--os-variant", metavar="ID", help="osinfo ID, e.g. debian12.")
    ] = None,
    default_user: Annotated[
        str | None,
        typer.Option(
            "--default-user",
            metavar="USER",
            help="The image's cloud user (default: from the OS variant: debian, ubuntu, ...).",
        ),
    ] = None,
    json_out: JsonFlag = False,
    uri: UriOpt = None,
) -> None:
    """Copy an image file into the image store under NAME (never replacing one)."""
    guarded(
        lambda: _typed(
            name=(check_new_name, name),
            os_variant=(check_os_variant, os_variant),
            default_user=(check_default_user, default_user),
        )
    )
    settings = settings_for(uri)
    catalog = ImageCatalog.from_settings(settings)

    def run() -> ImageInfo:
        with _hosts(settings) as (host, _all):
            return catalog.add_file(
                name, file, host, os_variant=os_variant, default_user=default_user
            )

    info = guarded(lambda: _relabelled(run))
    if json_out:
        out.print_json(json.dumps(info.to_json()))
    else:
        out.print(Text(f"added {_summary(info)}"), soft_wrap=True)


@image_app.command("ls")
def image_ls(json_out: JsonFlag = False, uri: UriOpt = None) -> None:
    """The images of the image store, with the VMs and transitions using each."""
    settings = settings_for(uri)
    catalog = ImageCatalog.from_settings(settings)

    def run() -> list[ImageInfo]:
        with _hosts(settings) as (host, hosts):
            catalog.ensure_pool(host)
            return catalog.images(_users(settings, catalog, hosts))

    images = guarded(run)
    if json_out:
        out.print_json(json.dumps([i.to_json() for i in images]))
        return
    if not images:
        err.print(f"no images in the store {catalog.store_dir}")
        return
    columns = ["name", "format", "virtual", "file", "os variant", "default user"]
    columns += ["in use by", "added at"]
    rows = []
    for i in images:
        users = [*i.in_use_by, *(f"transition {t}" for t in i.transitions)]
        row = [i.name, i.format or "?", _size(i.virtual_size), _size(i.file_size)]
        row += [i.os_variant or "-", i.default_user or "-", ", ".join(users) or "-"]
        rows.append([*row, (i.added_at or "by hand")[:19].replace("T", " ")])
    if out.is_terminal:
        table = Table(*columns, box=None)  # no frame: fits 80 columns, like `vmshadow ls`
        for row in rows:
            table.add_row(*(Text(c) for c in row))
        out.print(table)
    else:  # a pipe or a file: tab-separated, one line per image, as `vmshadow ls`
        typer.echo("\n".join("\t".join(r) for r in [columns, *rows]))
    for i in images:
        if i.problem:
            err.print(Text(f"warning: {i.name} cannot be launched: {i.problem}"))


@image_app.command("rm")
def image_rm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The store image to remove.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    uri: UriOpt = None,
) -> None:
    """Remove an image (its libvirt volume and its record); refused while in use."""
    guarded(lambda: _typed(name=(check_new_name, name)))
    settings = settings_for(uri)
    catalog = ImageCatalog.from_settings(settings)

    def users(hosts: list[ImageHost]) -> dict[str, Users]:
        return _users(settings, catalog, hosts)

    def check_first() -> ImageInfo:
        with _hosts(settings) as (_host, hosts):
            return catalog.removable(name, users(hosts))

    def remove() -> None:
        # Asked again: a VM may have been defined while the prompt waited.
        with _hosts(settings) as (host, hosts):
            catalog.remove(name, host, users(hosts))

    info = guarded(lambda: _relabelled(check_first))
    if not yes and not typer.confirm(f"Remove image {name} ({_size(info.file_size)})?"):
        err.print("not removed")
        raise typer.Exit(code=1)
    guarded(lambda: _relabelled(remove))
    out.print(Text(f"removed {name}"))


@image_app.command("pool")
def image_pool(uri: UriOpt = None) -> None:
    """Make the image store's folder and its libvirt pool if missing (safe to repeat)."""
    settings = settings_for(uri)
    catalog = ImageCatalog.from_settings(settings)

    def run() -> None:
        with _hosts(settings) as (host, _all):
            catalog.ensure_pool(host)

    guarded(run)
    out.print(Text(f"libvirt pool {catalog.pool} over {catalog.store_dir}"))
