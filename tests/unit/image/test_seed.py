"""The NoCloud seed ISO, read back with pycdlib as the guest's kernel would see it."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pycdlib
import pytest
import yaml

from vmshadow.domain.errors import ConfigError
from vmshadow.image.seed import write_seed

USER_DATA = "#cloud-config\nusers:\n  - name: probe\n    shell: /bin/bash\n"
NETWORK = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"


def _read_back(path: Path) -> tuple[str, str, dict[str, bytes], dict[str, bytes], list[str]]:
    """Volume label, Joliet label, files by Rock Ridge name, by Joliet name, plain names."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().rstrip()
        joliet_label = iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip()

        def read(**where: str) -> bytes:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **where)
            return out.getvalue()

        rr_names = [
            c.rock_ridge.name().decode()
            for c in iso.list_children(rr_path="/")
            if not (c.is_dot() or c.is_dotdot())
        ]
        joliet_names = [
            c.file_identifier().decode("utf-16-be")
            for c in iso.list_children(joliet_path="/")
            if not (c.is_dot() or c.is_dotdot())
        ]
        plain = sorted(
            c.file_identifier().decode()
            for c in iso.list_children(iso_path="/")
            if not (c.is_dot() or c.is_dotdot())
        )
        by_rr = {name: read(rr_path=f"/{name}") for name in rr_names}
        by_joliet = {name: read(joliet_path=f"/{name}") for name in joliet_names}
    finally:
        iso.close()
    return label, joliet_label, by_rr, by_joliet, plain


def test_seed_has_the_cidata_label_and_the_files_under_their_own_names(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    write_seed(seed, hostname="web1", instance_id="i-web1", user_data=USER_DATA)

    label, joliet_label, by_rr, by_joliet, plain = _read_back(seed)
    assert label == "cidata"
    assert joliet_label == "cidata"
    assert sorted(by_rr) == ["meta-data", "user-data"]
    assert by_joliet == by_rr
    assert plain == ["META_DATA.;1", "USER_DATA.;1"]
    assert by_rr["user-data"].decode() == USER_DATA
    assert yaml.safe_load(by_rr["meta-data"]) == {
        "instance-id": "i-web1",
        "local-hostname": "web1",
    }
    assert stat.S_IMODE(seed.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]


def test_network_config_is_written_only_when_given(tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    write_seed(seed, hostname="db", instance_id="i-db", user_data=USER_DATA, network_config=NETWORK)
    _, _, by_rr, by_joliet, _ = _read_back(seed)
    assert by_rr["network-config"].decode() == NETWORK
    assert by_joliet["network-config"].decode() == NETWORK


def test_multipart_user_data_is_accepted(tmp_path: Path) -> None:
    multipart = 'Content-Type: multipart/mixed; boundary="b"\nMIME-Version: 1.0\n\n--b--\n'
    seed = tmp_path / "seed.iso"
    write_seed(seed, hostname="h", instance_id="i-1", user_data=multipart, mode=0o640)
    assert _read_back(seed)[2]["user-data"].decode() == multipart
    assert stat.S_IMODE(seed.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_data": "#!/bin/sh\necho hi\n"}, "user_data"),
        ({"user_data": "#cloud-configs\n"}, "user_data"),
        ({"user_data": "#cloud-config\n- a list\n"}, "user_data"),
        ({"user_data": "#cloud-config\nusers: [\n"}, "user_data"),
        ({"hostname": "bad_name"}, "hostname"),
        ({"hostname": "-web"}, "hostname"),
        ({"instance_id": "a b"}, "instance_id"),
        ({"network_config": "- not a mapping\n"}, "network_config"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, kwargs: dict[str, str], field: str
) -> None:
    args: dict[str, str] = {"hostname": "web1", "instance_id": "i-1", "user_data": USER_DATA}
    args.update(kwargs)
    with pytest.raises(ConfigError) as caught:
        write_seed(
            tmp_path / "seed.iso",
            hostname=args["hostname"],
            instance_id=args["instance_id"],
            user_data=args["user_data"],
            network_config=args.get("network_config"),
        )
    assert caught.value.field == field
    assert list(tmp_path.iterdir()) == []
