"""Issue 14, items 1-4: a transition never names a host path.

Each shape the attack took is refused before anything exists: at the store
check (with real qemu-img), and through the API on libvirt's test driver,
where the answer is a 422 naming ``image`` and no domain, folder or row is
left behind.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmshadow.config import Settings, load_settings
from vmshadow.domain.errors import ConfigError
from vmshadow.image.userstore import resolve_user_image
from vmshadow.server import Service

pytestmark = [pytest.mark.security, pytest.mark.subprocess]
BACKING_FORMAT_MAGIC = bytes.fromhex("e2792aca")


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    d = tmp_path / "user-images"
    d.mkdir()
    return d


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    """Stands in for /etc/shadow: a file outside the store with a secret in it."""
    f = tmp_path / "secret"
    f.write_bytes(b"root:$6$secret\n" * 100)
    return f


def refused(store: Path, name: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_user_image(store, name)
    assert err.value.field == "image"
    assert reason in err.value.reason, err.value.reason


@pytest.mark.parametrize("name", ["/etc/shadow", "/tmp/../../etc/shadow", "../secret", "a/b"])
def test_a_path_is_not_an_image_name(store: Path, name: str) -> None:
    refused(store, name, "is not an image name")


def test_a_link_leaving_the_store_is_refused(store: Path, host_file: Path) -> None:
    (store / "evil").symlink_to(host_file)
    refused(store, "evil", "resolves outside the image store")
    (store / "evil2").symlink_to("../secret")
    refused(store, "evil2", "resolves outside the image store")


def test_a_link_inside_the_store_is_followed(store: Path) -> None:
    qemu_img("create", "-q", "-f", "qcow2", str(store / "debian"), "64M")
    (store / "alias").symlink_to("debian")
    assert resolve_user_image(store, "alias").path == store.resolve() / "debian"


def test_a_hard_link_is_refused(store: Path, host_file: Path) -> None:
    os.link(host_file, store / "hard")
    refused(store, "hard", "hard links")


def test_a_qcow2_backed_by_a_host_file_is_refused(store: Path, host_file: Path) -> None:
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(host_file), "-F", "raw", str(store / "e"))
    refused(store, "e", "the backing file of e resolves outside the image store")


def test_a_qcow2_backed_by_a_device_is_refused(store: Path) -> None:
    # qemu-img create -u: no need to open the device to write the header.
    qemu_img("create", "-q", "-u", "-f", "qcow2", "-b", "/dev/null", "-F", "raw",
             str(store / "dev"), "64M")  # fmt: skip
    refused(store, "dev", "outside the image store")
    qemu_img("create", "-q", "-u", "-f", "qcow2", "-b", "nbd://127.0.0.1:1/x", "-F", "raw",
             str(store / "nbd"), "64M")  # fmt: skip
    refused(store, "nbd", "only files in the store")


def test_devices_and_fifos_in_the_store_are_refused(store: Path) -> None:
    os.mkfifo(store / "fifo")
    refused(store, "fifo", "not a regular file")
    (store / "null").symlink_to("/dev/null")
    refused(store, "null", "resolves outside the image store")
    (store / "dir").mkdir()
    refused(store, "dir", "not a regular file")


def test_the_format_comes_from_the_content_not_the_suffix(store: Path) -> None:
    (store / "disk.qcow2").write_bytes(b"\0" * 65536)  # raw, whatever the name says
    assert resolve_user_image(store, "disk.qcow2").format == "raw"
    qemu_img("create", "-q", "-f", "qcow2", str(store / "disk.raw"), "64M")
    assert resolve_user_image(store, "disk.raw").format == "qcow2"
    qemu_img("create", "-q", "-f", "vmdk", str(store / "disk.vmdk"), "64M")
    refused(store, "disk.vmdk", "only qcow2 or raw")


def test_a_chain_inside_the_store_is_accepted(store: Path) -> None:
    qemu_img("create", "-q", "-f", "qcow2", str(store / "base"), "64M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", str(store / "top"))
    img = resolve_user_image(store, "top")
    assert img.format == "qcow2" and img.virtual_size == 64 * 2**20
    assert [(p.name, f) for p, f in img.chain] == [("top", "qcow2"), ("base", "qcow2")]


def test_an_image_rewritten_after_a_check_is_checked_again(
    store: Path, host_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers are kept by the file's identity and times: an image that was
    fine once and is then rebased onto a host file is refused, not remembered."""
    qemu_img("create", "-f", "qcow2", str(store / "base"), "1M")
    qemu_img("create", "-f", "qcow2", "-b", "base", "-F", "qcow2", str(store / "top"), "1M")
    from vmshadow.image import userstore

    monkeypatch.setattr(userstore, "RACY_NS", 0)  # kept even though just written
    assert len(resolve_user_image(store, "top").chain) == 2
    qemu_img("rebase", "-u", "-b", str(host_file), "-F", "raw", str(store / "top"))
    refused(store, "top", "resolves outside the image store")


def test_an_unchanged_chain_is_read_once(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmshadow.image import userstore

    reads: list[Path] = []
    real = userstore.qemu_img_info

    def counted(path: Path) -> dict[str, object]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(userstore, "qemu_img_info", counted)
    # Files changed in the last 2 s are read each time (file times move in ticks).
    monkeypatch.setattr(userstore, "RACY_NS", 0)
    qemu_img("create", "-f", "qcow2", str(store / "base"), "1M")
    qemu_img("create", "-f", "qcow2", "-b", "base", "-F", "qcow2", str(store / "top"), "1M")
    first = resolve_user_image(store, "top")
    assert resolve_user_image(store, "top") == first
    assert len(reads) == 2  # each file of the chain once, not once per resolve


def test_a_launch_reads_an_unchanged_chain_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a launch does with a store image (check its chain, make it readable
    by QEMU's group) leaves its ctime alone, so the next launch reads no header."""
    from vmshadow.controller.context import user_image
    from vmshadow.image import userstore

    settings = load_settings(
        {("data_dir",): str(tmp_path / "data")}, config_path=tmp_path / "none", environ={}
    )
    settings.user_images_dir.mkdir(parents=True)
    qemu_img("create", "-f", "qcow2", str(settings.user_images_dir / "base"), "1M")
    reads: list[Path] = []
    real = userstore.qemu_img_info
    monkeypatch.setattr(userstore, "qemu_img_info", lambda p: reads.append(p) or real(p))
    monkeypatch.setattr(userstore, "RACY_NS", 0)
    user_image(settings, "base")
    changed = (settings.user_images_dir / "base").stat().st_ctime_ns
    user_image(settings, "base")
    user_image(settings, "base")
    assert (settings.user_images_dir / "base").stat().st_ctime_ns == changed
    assert len(reads) == 2  # before and after the first launch made it QEMU's to read


def test_a_backing_file_without_a_format_is_refused(store: Path) -> None:
    # Without a recorded format QEMU probes the backing file: a raw file whose
    # guest wrote a qcow2 header would then name its own backing file.
    qemu_img("create", "-q", "-f", "qcow2", str(store / "base"), "64M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", str(store / "top"))
    # qemu-img no longer writes such a file: turn the header's backing-format
    # extension (magic 0xE2792ACA) into an unknown one, which QEMU skips.
    top = store / "top"
    header = top.read_bytes()
    assert header.count(BACKING_FORMAT_MAGIC) == 1
    top.write_bytes(header.replace(BACKING_FORMAT_MAGIC, b"\x12\x34\x56\x78"))
    refused(store, "top", "without a qcow2 or raw format")


def test_an_external_data_file_outside_the_store_is_refused(store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "data.raw"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={outside}", str(store / "d"), "64M")
    refused(store, "d", "the data file of")


# -- through the API ------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, store: Path) -> Settings:
    return load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("user_images_dir",): str(store),
            ("libvirt_uri",): "test:///default",
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )


@pytest.mark.libvirt
@pytest.mark.parametrize("image", ["/etc/shadow", "/tmp/../../etc/shadow", "evil", "backed"])
def test_the_api_answers_422_and_creates_nothing(
    client: TestClient, svc: Service, settings: Settings, store: Path, host_file: Path,
    image: str,
) -> None:  # fmt: skip
    (store / "evil").symlink_to(host_file)
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(host_file), "-F", "raw",
             str(store / "backed"))  # fmt: skip
    r = client.post(
        "/api/v1/transitions",
        json={"vm_name": "web1", "image": image, "requested": {"vcpus": 1, "memory_mib": 512}},
        headers={"Authorization": f"Bearer {svc.token}"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "image"
    assert svc.store.count_unfinished() == 0 and svc.store.unfinished() == []
    assert not settings.vms_dir.exists() or not any(settings.vms_dir.iterdir())
    assert host_file.stat().st_uid == os.getuid()


@pytest.mark.libvirt
def test_the_api_accepts_a_store_image(client: TestClient, svc: Service, store: Path) -> None:
    qemu_img("create", "-q", "-f", "qcow2", str(store / "debian-12"), "64M")
    r = client.post(
        "/api/v1/transitions",
        json={"vm_name": "web1", "image": "debian-12",
              "requested": {"vcpus": 1, "memory_mib": 512}},
        headers={"Authorization": f"Bearer {svc.token}"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["image"] == "debian-12"
