"""The image store as a catalogue: import, record, list and remove users' images.

One module behind ``vmshadow image add/ls/rm`` and ``/api/v1/images``, so the
CLI and the API cannot drift apart on what an import checks. The store is a
flat folder (``Settings.user_images_dir``) that libvirt sees as the directory
pool ``vm.images_pool``; what ``add`` learnt of each image (its sha256, OS
variant, default user) is kept beside it in ``Settings.image_records_dir``,
one private JSON file per image, outside the store so the pool lists images
only. Images copied into the store by hand have no record and are listed with
what ``qemu-img`` can tell.

An import never trusts the file it was given: the bytes are first copied
(or uploaded) into a hidden partial file in the store, and every check runs on
that copy, which nobody else can swap underneath. It must stand alone (no
backing or data file: those would name host files), it enters the store under
its name with ``link()``, which never replaces an image that exists, and it is
then checked again exactly as a transition will check it
(``userstore.resolve_user_image``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vmshadow.domain.errors import ConfigError, ConflictError, NotFoundError
from vmshadow.hypervisor.filemodes import private_dir, qemu_readable
from vmshadow.image.importing import (
    CHUNK,
    Partial,
    check_default_user,
    check_new_name,
    check_os_variant,
    check_standalone,
    default_user_for,
    open_source,
)
from vmshadow.image.userstore import BUILTIN, NAME_RE, list_user_images, resolve_user_image

if TYPE_CHECKING:
    from vmshadow.config import Settings
    from vmshadow.domain.transition import Transition
    from vmshadow.hypervisor.domainxml import ShadowMetadata


STALE_PARTIAL_S = 86400.0


class ImageHost(Protocol):
    """What the catalogue needs of a libvirt host (``LibvirtHypervisor`` has it all)."""

    def ensure_pool(self, name: str, path: Path) -> None: ...
    def refresh_pool(self, name: str) -> None: ...
    def delete_volume(self, pool_name: str, volume: str) -> bool: ...
    def images_in_use(self, store_dir: Path) -> dict[Path, list[str]]: ...
    def list_managed_vms(self) -> list[tuple[str, ShadowMetadata]]: ...


class Unfinished(Protocol):
    """The store's unfinished transitions (``Store.unfinished``)."""

    def unfinished(self) -> list[Transition]: ...


@dataclass
class Users:
    """Who holds an image: VMs whose disks name it, unfinished transitions naming it."""

    vms: list[str] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)


@dataclass
class ImageInfo:
    name: str
    format: str | None
    virtual_size: int | None
    file_size: int
    sha256: str | None  # None: copied by hand, never hashed
    os_variant: str | None
    default_user: str | None
    added_at: str | None
    recorded: bool = False
    problem: str | None = None  # why a transition would refuse it; None when usable
    in_use_by: list[str] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# What a record file keeps; the rest of ImageInfo is worked out when listed.
_RECORDED = (
    *("name", "format", "virtual_size", "file_size", "sha256"),
    *("os_variant", "default_user", "added_at"),
)


@dataclass(frozen=True)
class ImageCatalog:
    store_dir: Path
    records_dir: Path
    pool: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageCatalog:
        return cls(settings.user_images_dir, settings.image_records_dir, settings.images_pool)

    # -- the pool ----------------------------------------------------------------------------
    def ensure_pool(self, host: ImageHost) -> None:
        """The store's folder and its libvirt pool, made on first use."""
        self._store()
        host.ensure_pool(self.pool, self.store_dir)

    def _store(self) -> Path:
        if not self.store_dir.is_dir():
            self.store_dir.mkdir(parents=True, mode=0o700)
            private_dir(self.store_dir)  # QEMU's group must enter it to read images
        self._sweep_partials()
        return self.store_dir

    def _sweep_partials(self) -> None:
        """Remove the partial files of imports whose process died (``kill -9``, a
        power cut); an import that ends any other way removes its own. A live
        import writes its file continuously, so one untouched for a day is nobody's."""
        cutoff = time.time() - STALE_PARTIAL_S
        for path in self.store_dir.glob(".*.partial-*"):
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < cutoff:
                    path.unlink()

    # -- import ------------------------------------------------------------------------------
    def check_absent(self, name: str) -> None:
        check_new_name(name)
        if os.path.lexists(self.store_dir / name):
            raise ConflictError(
                f"name: an image {name!r} is already in the store; remove it first "
                "(vmshadow image rm) or choose another name"
            )

    def start(self, name: str) -> Partial:
        """A partial file for importing ``name``, once the name is free."""
        self.check_absent(name)
        return Partial(self._store(), name)

    def add_file(
        self,
        name: str,
        source: Path,
        host: ImageHost,
        *,
        os_variant: str | None = None,
        default_user: str | None = None,
    ) -> ImageInfo:
        """Copy the image file ``source`` into the store as ``name`` (``vmshadow image add``)."""
        check_os_variant(os_variant)
        check_default_user(default_user)
        self.ensure_pool(host)  # before any copy: a host that cannot take it leaves nothing
        partial = self.start(name)
        try:
            fd = open_source(source)
            with os.fdopen(fd, "rb") as src:
                while chunk := src.read(CHUNK):
                    partial.write(chunk)
            return self.finish(
                partial,
                name,
                host,
                shown=source.name,
                os_variant=os_variant,
                default_user=default_user,
                what="file",
            )
        finally:
            partial.discard()

    def finish(
        self,
        partial: Partial,
        name: str,
        host: ImageHost,
        *,
        shown: str,
        os_variant: str | None,
        default_user: str | None,
        what: str,
    ) -> ImageInfo:
        """Check the written ``partial`` and make it the store image ``name``.

        ``what`` is the field a refusal names (``file``, or ``body`` for an upload).
        """
        check_os_variant(os_variant)
        check_default_user(default_user)
        sha256 = partial.close()
        check_standalone(partial.path, shown, what)
        qemu_readable(partial.path)
        final = self.store_dir / name
        try:
            os.link(partial.path, final)  # unlike rename(), never replaces an image
        except FileExistsError:
            self.check_absent(name)
            raise
        finally:
            partial.discard()
        try:
            found = resolve_user_image(self.store_dir, name)
        except ConfigError as exc:
            final.unlink(missing_ok=True)
            raise ConfigError(what, exc.reason) from None
        record = ImageInfo(
            name=name,
            format=found.format,
            virtual_size=found.virtual_size,
            file_size=partial.size,
            sha256=sha256,
            os_variant=os_variant,
            default_user=default_user or default_user_for(os_variant),
            added_at=datetime.now(UTC).isoformat(timespec="seconds"),
            recorded=True,
        )
        self._write_record(record)
        host.refresh_pool(self.pool)
        return record

    # -- records -----------------------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        return self.records_dir / f"{name}.json"

    def _write_record(self, info: ImageInfo) -> None:
        if not self.records_dir.is_dir():
            self.records_dir.mkdir(parents=True, mode=0o700)
        doc = {k: getattr(info, k) for k in _RECORDED}
        fd, tmp = tempfile.mkstemp(prefix=".record-", dir=self.records_dir)  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._record_path(info.name))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read_record(self, name: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self._record_path(name).read_text())
        except (OSError, ValueError):
            return None  # none, or unreadable: listed as an image copied by hand
        return doc if isinstance(doc, dict) and doc.get("name") == name else None

    # -- list, show, remove ------------------------------------------------------------------
    def images(self, users: dict[str, Users] | None = None) -> list[ImageInfo]:
        return [self._info(n, (users or {}).get(n)) for n in list_user_images(self.store_dir)]

    def get(self, name: str, users: dict[str, Users] | None = None) -> ImageInfo:
        if name == BUILTIN or not NAME_RE.fullmatch(name):
            raise NotFoundError(f"no image {name[:200]!r} in the store")
        if name not in list_user_images(self.store_dir):
            raise NotFoundError(f"no image {name!r} in the store")
        return self._info(name, (users or {}).get(name))

    def _info(self, name: str, users: Users | None) -> ImageInfo:
        rec = self._read_record(name) or {}
        path = self.store_dir / name
        fmt, size, problem = rec.get("format"), rec.get("virtual_size"), None
        try:
            found = resolve_user_image(self.store_dir, name)
            fmt, size = found.format, found.virtual_size
        except ConfigError as exc:
            problem = exc.reason
        try:
            file_size = path.stat().st_size
        except OSError:
            file_size = 0
        return ImageInfo(
            name=name,
            format=fmt,
            virtual_size=size,
            file_size=file_size,
            sha256=rec.get("sha256"),
            os_variant=rec.get("os_variant"),
            default_user=rec.get("default_user"),
            added_at=rec.get("added_at"),
            recorded=bool(rec),
            problem=problem,
            in_use_by=list(users.vms) if users else [],
            transitions=list(users.transitions) if users else [],
        )

    def remove(self, name: str, host: ImageHost, users: dict[str, Users]) -> ImageInfo:
        """Delete the image ``name`` (its volume, through libvirt) and its record.

        Refused (``ImageInUse``) while a VM's disks or an unfinished transition
        name it, or another store image is backed by it.
        """
        info = self.removable(name, users)
        self.ensure_pool(host)
        host.delete_volume(self.pool, name)
        # libvirt may not list it (a pool not refreshed; the test driver's
        # pools live in memory): the file goes either way.
        (self.store_dir / name).unlink(missing_ok=True)
        self._record_path(name).unlink(missing_ok=True)
        return info

    def removable(self, name: str, users: dict[str, Users]) -> ImageInfo:
        """The image ``name`` if nothing uses it; else ``ImageInUse`` naming the users."""
        info = self.get(name, users)
        dependents = self._backed_by(name)
        if info.in_use_by or info.transitions or dependents:
            raise ImageInUse(name, info.in_use_by, info.transitions, dependents)
        return info

    def _backed_by(self, name: str) -> list[str]:
        target = Path(os.path.realpath(self.store_dir / name))
        out = []
        for other in list_user_images(self.store_dir):
            with contextlib.suppress(ConfigError):
                chain = resolve_user_image(self.store_dir, other).backing
                if other != name and any(path == target for path, _fmt in chain):
                    out.append(other)
        return out


class ImageInUse(ConflictError):
    def __init__(
        self, name: str, vms: list[str], transitions: list[str], images: list[str]
    ) -> None:
        what = [f"VM {v}" for v in vms] + [f"transition {t}" for t in transitions]
        what += [f"image {i} (its backing file)" for i in images]
        super().__init__(f"name: image {name!r} is in use by {', '.join(what)}")
        self.vms, self.transitions, self.images = vms, transitions, images


def image_users(store_dir: Path, hosts: Iterable[ImageHost], store: Unfinished) -> dict[str, Users]:
    """Each store image's users on every host and in the store, by image name."""
    real = Path(os.path.realpath(store_dir))
    users: dict[str, Users] = {}
    for host in hosts:
        managed = {n for n, _meta in host.list_managed_vms()}
        for path, domains in host.images_in_use(real).items():
            for dom in domains:
                # Any domain holds the file; only vmshadow's are named plainly.
                who = dom if dom in managed else f"{dom} (not vmshadow's)"
                users.setdefault(path.name, Users()).vms.append(who)
    for row in store.unfinished():
        if row.image != BUILTIN:
            what = f"{row.id} ({row.kind} of {row.vm_name}, {row.state})"
            users.setdefault(row.image, Users()).transitions.append(what)
    return users
