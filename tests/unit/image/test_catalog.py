"""The image store's catalogue (``image.catalog``): import, record, list, remove.

Real qemu-img (marked ``subprocess``) on files in ``tmp_path``; libvirt is a
small fake here (the real pool is in tests/integration/test_image_store_pool.py).
Every refusal checks that nothing was left in the store: no image, no hidden
partial file, no record.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmshadow.domain.errors import ConfigError, ConflictError, NotFoundError
from vmshadow.hypervisor.domainxml import ShadowMetadata
from vmshadow.image import catalog as catalog_module
from vmshadow.image.catalog import ImageCatalog, ImageInUse, image_users
from vmshadow.image.importing import (
    check_default_user,
    check_new_name,
    check_os_variant,
    default_user_for,
)


class FakeHost:
    """The few libvirt verbs the catalogue uses, recorded."""

    def __init__(self) -> None:
        self.pools: dict[str, Path] = {}
        self.refreshed = 0
        self.deleted: list[str] = []
        self.in_use: dict[Path, list[str]] = {}
        self.managed: list[str] = []

    def ensure_pool(self, name: str, path: Path) -> None:
        self.pools[name] = path

    def refresh_pool(self, name: str) -> None:
        assert name in self.pools
        self.refreshed += 1

    def delete_volume(self, pool_name: str, volume: str) -> bool:
        self.deleted.append(volume)
        return False  # as the test driver: the catalogue removes the file itself

    def images_in_use(self, store_dir: Path) -> dict[Path, list[str]]:
        return self.in_use

    def list_managed_vms(self) -> list[tuple[str, ShadowMetadata]]:
        return [(n, ShadowMetadata("vm", n, "", "")) for n in self.managed]


class FakeStore:
    def __init__(self, rows: list[Any] | None = None) -> None:
        self.rows = rows or []

    def unfinished(self) -> list[Any]:
        return self.rows


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def cat(tmp_path: Path) -> ImageCatalog:
    return ImageCatalog(tmp_path / "data" / "user-images", tmp_path / "data" / "records", "p")


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def qcow2(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "debian.qcow2"
    path.parent.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", str(path), "64M")
    return path


def store_files(cat: ImageCatalog) -> list[str]:
    """Everything in the store, hidden files too."""
    return sorted(os.listdir(cat.store_dir)) if cat.store_dir.exists() else []


def refused(cat: ImageCatalog, host: FakeHost, name: str, src: Path, field: str, text: str) -> None:
    before = store_files(cat)
    with pytest.raises(ConfigError) as err:
        cat.add_file(name, src, host)
    assert err.value.field == field
    assert text in err.value.reason, err.value.reason
    assert store_files(cat) == before  # no image, no partial file
    assert not cat.records_dir.exists() or not any(cat.records_dir.iterdir())


# -- what was typed ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "a/b", "/etc/shadow", ".hidden", "builtin", "", "a b"])
def test_a_name_that_is_not_a_plain_word_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_new_name(name)
    assert err.value.field == "name"


@pytest.mark.parametrize(
    ("variant", "user"),
    [
        ("debian12", "debian"),
        ("ubuntu24.04", "ubuntu"),
        ("fedora40", "fedora"),
        ("centos-stream9", "cloud-user"),
        ("rhel9.4", "cloud-user"),
        ("rocky9", "cloud-user"),
        ("almalinux9", "cloud-user"),
        ("alpine3.19", None),
        (None, None),
    ],
)
def test_the_default_user_follows_the_os_variant(variant: str | None, user: str | None) -> None:
    assert default_user_for(variant) == user


@pytest.mark.parametrize("bad", ["Debian12", "debian 12", "../x", "-x", "x" * 65, "deb;rm"])
def test_an_os_variant_is_a_plain_identifier(bad: str) -> None:
    assert check_os_variant("debian12") == "debian12"
    with pytest.raises(ConfigError) as err:
        check_os_variant(bad)
    assert err.value.field == "os_variant"


@pytest.mark.parametrize("bad", ["root", "Admin", "a b", "x" * 33, "1abc"])
def test_a_default_user_is_a_user_name_and_not_root(bad: str) -> None:
    assert check_default_user("cloud-user") == "cloud-user"
    with pytest.raises(ConfigError) as err:
        check_default_user(bad)
    assert err.value.field == "default_user"


# -- import --------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_add_copies_checks_and_records(cat: ImageCatalog, host: FakeHost, qcow2: Path) -> None:
    info = cat.add_file("deb12", qcow2, host, os_variant="debian12")
    path = cat.store_dir / "deb12"
    assert path.read_bytes() == qcow2.read_bytes()
    assert (info.format, info.virtual_size, info.file_size) == (
        "qcow2",
        64 * 2**20,
        qcow2.stat().st_size,
    )
    assert info.sha256 == hashlib.sha256(qcow2.read_bytes()).hexdigest()
    assert (info.os_variant, info.default_user, info.recorded) == ("debian12", "debian", True)
    assert stat.S_IMODE(path.stat().st_mode) in (0o440, 0o444)  # QEMU's group, read-only
    assert store_files(cat) == ["deb12"]  # the partial file is gone
    record = cat.records_dir / "deb12.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert host.pools == {"p": cat.store_dir} and host.refreshed == 1
    listed = cat.images()
    assert [i.to_json() for i in listed] == [{**info.to_json(), "problem": None}]


@pytest.mark.subprocess
def test_a_given_default_user_wins(cat: ImageCatalog, host: FakeHost, qcow2: Path) -> None:
    info = cat.add_file("d", qcow2, host, os_variant="debian12", default_user="ops")
    assert info.default_user == "ops"


@pytest.mark.subprocess
def test_a_sparse_raw_image_stays_sparse(cat: ImageCatalog, host: FakeHost, tmp_path: Path) -> None:
    src = tmp_path / "disk.raw"
    with src.open("wb") as f:
        f.write(b"boot" * 1000)
        f.truncate(256 * 2**20)
    info = cat.add_file("raw1", src, host)
    copy = cat.store_dir / "raw1"
    assert (info.format, copy.stat().st_size) == ("raw", 256 * 2**20)
    assert copy.stat().st_blocks * 512 <= 2**20  # the one chunk with data, of 256
    assert info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.mark.subprocess
def test_a_file_with_a_backing_file_is_refused(
    cat: ImageCatalog, host: FakeHost, qcow2: Path, tmp_path: Path
) -> None:
    over = tmp_path / "over.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(qcow2), "-F", "qcow2", str(over))
    refused(cat, host, "over", over, "file", "backing-filename")


@pytest.mark.subprocess
def test_a_file_with_an_external_data_file_is_refused(
    cat: ImageCatalog, host: FakeHost, tmp_path: Path
) -> None:
    img = tmp_path / "ext.qcow2"
    data = tmp_path / "ext.data"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={data}", str(img), "16M")
    refused(cat, host, "ext", img, "file", "data-file")


@pytest.mark.subprocess
def test_a_vmdk_is_refused(cat: ImageCatalog, host: FakeHost, tmp_path: Path) -> None:
    img = tmp_path / "x.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", str(img), "16M")
    refused(cat, host, "x", img, "file", "is vmdk: only qcow2 or raw")


@pytest.mark.subprocess
def test_a_symlink_fifo_device_or_folder_is_refused(
    cat: ImageCatalog, host: FakeHost, qcow2: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.qcow2"
    link.symlink_to(qcow2)
    refused(cat, host, "l", link, "file", "symbolic link")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(cat, host, "f", fifo, "file", "not a regular file")  # and it did not block
    refused(cat, host, "d", Path("/dev/zero"), "file", "not a regular file")
    refused(cat, host, "t", tmp_path, "file", "not a regular file")
    refused(cat, host, "m", tmp_path / "missing", "file", "cannot be read")


@pytest.mark.subprocess
def test_an_existing_name_is_never_overwritten(
    cat: ImageCatalog, host: FakeHost, qcow2: Path, tmp_path: Path
) -> None:
    cat.add_file("deb", qcow2, host)
    first = (cat.store_dir / "deb").read_bytes()
    other = tmp_path / "other.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(other), "128M")
    with pytest.raises(ConflictError, match="already in the store"):
        cat.add_file("deb", other, host)
    assert (cat.store_dir / "deb").read_bytes() == first
    assert store_files(cat) == ["deb"]
    assert cat.get("deb").virtual_size == 64 * 2**20


@pytest.mark.subprocess
def test_an_image_that_appears_while_importing_is_kept(
    cat: ImageCatalog, host: FakeHost, qcow2: Path
) -> None:
    """The name was free when the import began; the final link() still refuses."""
    partial = cat.start("deb")
    partial.write(qcow2.read_bytes())
    (cat.store_dir / "deb").write_bytes(b"someone else's")
    with pytest.raises(ConflictError):
        cat.finish(partial, "deb", host, shown="x", os_variant=None, default_user=None, what="file")
    assert (cat.store_dir / "deb").read_bytes() == b"someone else's"
    assert store_files(cat) == ["deb"]


@pytest.mark.subprocess
def test_an_image_the_store_check_refuses_is_deleted(
    cat: ImageCatalog, host: FakeHost, qcow2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(_store: Path, _name: str) -> None:
        raise ConfigError("image", "refused by the store check")

    monkeypatch.setattr(catalog_module, "resolve_user_image", refuse)
    with pytest.raises(ConfigError, match="refused by the store check") as err:
        cat.add_file("deb", qcow2, host)
    assert err.value.field == "file"
    assert store_files(cat) == []
    assert not (cat.records_dir / "deb.json").exists()


def test_a_copy_that_fails_halfway_leaves_nothing(
    cat: ImageCatalog, host: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.raw"
    src.write_bytes(b"x" * (3 * 2**20))
    writes = []

    def write(self: Any, data: bytes) -> None:
        writes.append(len(data))
        if len(writes) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(catalog_module.Partial, "write", write)
    with pytest.raises(OSError, match="No space"):
        cat.add_file("big", src, host)
    assert store_files(cat) == []


def test_stale_partial_files_are_swept_and_live_ones_kept(
    cat: ImageCatalog, host: FakeHost
) -> None:
    cat.ensure_pool(host)
    stale = cat.store_dir / ".deb.partial-abc"
    live = cat.store_dir / ".ubu.partial-def"
    stale.write_bytes(b"x")
    live.write_bytes(b"y")
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    cat.ensure_pool(host)
    assert store_files(cat) == [".ubu.partial-def"]


# -- list and remove ---------------------------------------------------------------------
@pytest.mark.subprocess
def test_an_image_copied_by_hand_is_listed_with_what_qemu_img_says(
    cat: ImageCatalog, host: FakeHost, tmp_path: Path
) -> None:
    cat.ensure_pool(host)
    qemu_img("create", "-q", "-f", "qcow2", str(cat.store_dir / "manual"), "32M")
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 512)
    evil = cat.store_dir / "evil"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(evil))
    (cat.store_dir / ".evil.partial-x").write_bytes(b"")  # hidden: never listed
    manual, bad = sorted(cat.images(), key=lambda i: i.name, reverse=True)
    assert (manual.name, manual.format, manual.virtual_size) == ("manual", "qcow2", 32 * 2**20)
    assert (manual.sha256, manual.recorded, manual.added_at, manual.problem) == (
        None,
        False,
        None,
        None,
    )
    assert bad.name == "evil" and bad.problem and "outside the image store" in bad.problem


@pytest.mark.subprocess
def test_remove_is_refused_while_a_vm_or_transition_uses_the_image(
    cat: ImageCatalog, host: FakeHost, qcow2: Path
) -> None:
    cat.add_file("deb", qcow2, host)
    real = (cat.store_dir / "deb").resolve()
    host.in_use = {real: ["web1", "handmade"]}
    host.managed = ["web1"]
    row = SimpleNamespace(id="t123", kind="launch", vm_name="web2", state="predicted", image="deb")
    builtin = SimpleNamespace(
        id="t9", kind="launch", vm_name="x", state="requested", image="builtin"
    )
    users = image_users(cat.store_dir, [host], FakeStore([row, builtin]))
    with pytest.raises(ImageInUse) as err:
        cat.remove("deb", host, users)
    assert err.value.vms == ["web1", "handmade (not vmshadow's)"]
    assert err.value.transitions == ["t123 (launch of web2, predicted)"]
    assert "VM web1" in str(err.value) and "transition t123" in str(err.value)
    assert (cat.store_dir / "deb").exists() and host.deleted == []
    assert cat.get("deb", users).in_use_by == ["web1", "handmade (not vmshadow's)"]

    host.in_use = {}
    cat.remove("deb", host, image_users(cat.store_dir, [host], FakeStore()))
    assert host.deleted == ["deb"]
    assert store_files(cat) == [] and not (cat.records_dir / "deb.json").exists()
    with pytest.raises(NotFoundError):
        cat.get("deb")


@pytest.mark.subprocess
def test_remove_is_refused_while_another_store_image_is_backed_by_it(
    cat: ImageCatalog, host: FakeHost, qcow2: Path
) -> None:
    cat.add_file("base", qcow2, host)
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", str(cat.store_dir / "top"))
    with pytest.raises(ImageInUse, match="image top"):
        cat.remove("base", host, {})
    assert (cat.store_dir / "base").exists()


@pytest.mark.parametrize("name", ["../data", "builtin", "/etc/passwd", "nope"])
def test_remove_of_what_is_not_a_store_image_is_not_found(
    cat: ImageCatalog, host: FakeHost, name: str
) -> None:
    with pytest.raises(NotFoundError):
        cat.remove(name, host, {})
    assert host.deleted == []
