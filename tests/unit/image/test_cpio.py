import io

from vmshadow.image.cpio import write_newc_archive


def read_newc(data: bytes) -> list[tuple[str, int, bytes]]:
    """A minimal reader, independent of the writer, to check what it wrote."""
    entries, pos = [], 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body_start = name_start + namesize
        body_start += (4 - body_start % 4) % 4
        body = data[body_start : body_start + size]
        pos = body_start + size
        pos += (4 - pos % 4) % 4
        if name == "TRAILER!!!":
            return entries
        entries.append((name, mode, body))


def test_roundtrip_with_odd_sizes() -> None:
    buf = io.BytesIO()
    entries = [("bin", 0o040755, None), ("bin/a", 0o100755, b"x" * 5), ("init", 0o100755, b"")]
    write_newc_archive(buf, entries)
    got = read_newc(buf.getvalue())
    assert got == [("bin", 0o040755, b""), ("bin/a", 0o100755, b"xxxxx"), ("init", 0o100755, b"")]
    assert len(buf.getvalue()) % 4 == 0
