"""libvirt's save-file header: read, rewritten for another domain, put back."""

from __future__ import annotations

import struct
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmshadow.domain.errors import HypervisorError
from vmshadow.domain.shadow import Accelerator, ShadowSize, ShadowSpec
from vmshadow.hypervisor.domainxml import parse_metadata, restored_shadow_xml
from vmshadow.hypervisor.savefile import (
    HEADER_SIZE,
    parse_region,
    read_region,
    rewrite_region,
    swapped_header,
)

XML = "<domain type='qemu'><name>vmshadow-shadow-tmpl</name><uuid>u-1</uuid></domain>\n"
COOKIE = "<cookie><cpu mode='custom'/></cookie>\n"
STREAM = b"QEVM\x00\x00\x00\x03" + bytes(range(256)) * 8


def save_image(
    xml: str = XML,
    cookie: str | None = COOKIE,
    *,
    version: int = 2,
    magic: bytes = b"LibvirtQemudSave",
    pad: int = 64 * 1024,
) -> bytes:
    """A file laid out as libvirt's virQEMUSaveDataWrite writes one."""
    body = xml.encode() + b"\0"
    cookie_at = 0
    if cookie is not None:
        cookie_at = len(body)
        body += cookie.encode() + b"\0"
    data_len = len(body) + pad
    head = struct.pack("<16s5I14I", magic, version, data_len, 1, 0, cookie_at, *([0] * 14))
    return head + body + b"\0" * pad + STREAM


def test_header_is_92_bytes_as_in_libvirt() -> None:
    # 16-byte magic, five uint32 fields, 14 unused (qemu_saveimage.h).
    assert HEADER_SIZE == 92


def test_parse_reads_xml_and_cookie() -> None:
    h = parse_region(save_image())
    assert h.version == 2 and h.was_running == 1 and h.format == 0
    assert h.xml == XML
    assert h.cookie.decode() == COOKIE
    assert h.cookie_offset == len(XML) + 1


def test_version_1_has_no_cookie() -> None:
    h = parse_region(save_image(cookie=None, version=1))
    assert h.xml == XML and h.cookie == b""


def test_rewrite_keeps_size_moves_cookie_and_never_touches_the_stream(tmp_path: Path) -> None:
    data = save_image()
    path = tmp_path / "state.sav"
    path.write_bytes(data)
    region = read_region(path)
    longer = XML.replace("tmpl", "abcdef012345") + "<!-- " + "x" * 5000 + " -->\n"
    new = rewrite_region(region, longer)
    assert len(new) == len(region)
    h = parse_region(new)
    assert h.xml == longer
    assert h.cookie.decode() == COOKIE  # still found where cookieOffset says
    assert h.cookie_offset == len(longer.encode()) + 1
    assert new[HEADER_SIZE + h.cookie_offset + len(COOKIE) + 1 :].strip(b"\0") == b""
    # Written back over the file, the stream behind the region is the same.
    assert (new + data[len(region) :]).endswith(STREAM)


def test_rewrite_with_shorter_xml_zeroes_what_the_longer_left() -> None:
    region = rewrite_region(save_image()[: -len(STREAM)], XML * 20)
    again = rewrite_region(region, XML)
    h = parse_region(again)
    assert h.xml == XML and h.cookie.decode() == COOKIE


def test_xml_that_does_not_fit_is_refused() -> None:
    region = save_image(pad=16)[: -len(STREAM)]
    with pytest.raises(HypervisorError, match="does not fit"):
        rewrite_region(region, XML + " " * 64)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a save image at all" * 10, "not a libvirt save image"),
        (b"short", "too short"),
        (save_image(magic=b"LibvirtQemudPart"), "unfinished"),
        (save_image(version=7), "version 7"),
    ],
)
def test_files_that_are_not_save_images_are_refused(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = tmp_path / "x.sav"
    path.write_bytes(data)
    with pytest.raises(HypervisorError, match=reason):
        read_region(path)


def test_cookie_offset_beyond_the_region_is_refused() -> None:
    data = bytearray(save_image())
    struct.pack_into("<I", data, 32, 10**6)
    with pytest.raises(HypervisorError, match="cookie"):
        parse_region(bytes(data))


def test_swapped_header_puts_the_original_back_even_on_error(tmp_path: Path) -> None:
    data = save_image()
    path = tmp_path / "state.sav"
    path.write_bytes(data)
    region = read_region(path)
    new = rewrite_region(region, XML.replace("tmpl", "one"))
    with pytest.raises(RuntimeError), swapped_header(path, region, new):
        assert parse_region(read_region(path)).xml == XML.replace("tmpl", "one")
        raise RuntimeError("restore failed")
    assert path.read_bytes() == data


def test_swapped_header_refuses_a_file_of_another_layout_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "state.sav"
    other = save_image(pad=1000)
    path.write_bytes(other)
    region = save_image()[: -len(STREAM)]
    swap = swapped_header(path, region, rewrite_region(region, XML))
    with pytest.raises(HypervisorError, match="does not match"), swap:
        pass
    assert path.read_bytes() == other


def test_concurrent_swaps_take_turns(tmp_path: Path) -> None:
    data = save_image()
    path = tmp_path / "state.sav"
    path.write_bytes(data)
    region = read_region(path)
    seen: list[bool] = []

    def one(i: int) -> None:
        mine = XML.replace("tmpl", f"n{i}")
        with swapped_header(path, region, rewrite_region(region, mine)):
            # No other holder rewrote the header while this one held it.
            for _ in range(20):
                seen.append(parse_region(read_region(path)).xml == mine)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen and all(seen)
    assert path.read_bytes() == data


SAVED = """<domain type='qemu'>
  <name>vmshadow-shadow-tmpl</name>
  <uuid>b7b39bc5-e05a-4705-814a-49d004b92ef0</uuid>
  <metadata xmlns:vmshadow="https://vmshadow.dev/xmlns/shadow/1">
    <vmshadow:shadow><vmshadow:role>shadow</vmshadow:role><vmshadow:id>tmpl</vmshadow:id>
      <vmshadow:run-dir>/runs/tmpl</vmshadow:run-dir><vmshadow:owner>h:1</vmshadow:owner>
    </vmshadow:shadow>
  </metadata>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='writeback'/>
      <source file='/runs/tmpl/root.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/img/base.qcow2'/>
        <backingStore/></backingStore>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/runs/tmpl/scratch.img'/><target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='file'><source path='/runs/tmpl/console.log'/></serial>
    <console type='file'><source path='/runs/tmpl/console.log'/></console>
  </devices>
</domain>
"""


def test_restored_xml_renames_and_repoints_only_what_is_the_shadows_own() -> None:
    run = Path("/runs/new1")
    spec = ShadowSpec(
        shadow_id="new1",
        size=ShadowSize(),
        accelerator=Accelerator.TCG,
        kernel=Path("/img/vmlinuz"),
        initrd=Path("/img/initrd.img"),
        root_disk=run / "root.qcow2",
        scratch_disk=run / "scratch.img",
        console_log=run / "console.log",
        run_dir=run,
        created_at="2026-01-01T00:00:00Z",
        owner="h:2",
        base=Path("/img/base.qcow2"),
    )
    chain = ((Path("/tpl/k/overlay.qcow2"), "qcow2"), (Path("/img/base.qcow2"), "qcow2"))
    xml = restored_shadow_xml(SAVED, spec, chain, uuid="11111111-2222-3333-4444-555555555555")
    dom = ET.fromstring(xml)
    assert dom.findtext("name") == "vmshadow-shadow-new1"
    assert dom.findtext("uuid") == "11111111-2222-3333-4444-555555555555"
    meta = parse_metadata(xml)
    assert meta is not None and meta.shadow_id == "new1" and meta.owner == "h:2"
    assert len(dom.findall("metadata/*")) == 1
    vda, vdb = dom.findall("devices/disk")
    assert vda.find("source").get("file") == "/runs/new1/root.qcow2"  # type: ignore[union-attr]
    files = [s.get("file") for s in vda.iter("source")]
    assert files == ["/runs/new1/root.qcow2", "/tpl/k/overlay.qcow2", "/img/base.qcow2"]
    # The shared files are only read: libvirt must leave their owner alone.
    assert [s.get("relabel") for s in vda.iter("seclabel")] == ["no", "no"]
    # The device address QEMU's stream was saved with stays.
    assert vda.find("address").get("slot") == "0x03"  # type: ignore[union-attr]
    assert vdb.find("source").get("file") == "/runs/new1/scratch.img"  # type: ignore[union-attr]
    assert {s.get("path") for s in dom.iter("source") if s.get("path")} == {
        "/runs/new1/console.log"
    }
