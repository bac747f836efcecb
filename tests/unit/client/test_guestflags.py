"""``launch``'s guest flags, read on the user's side: a private key is refused
before anything is sent, files become content, never paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmshadow.cli.checks import BadUsage
from vmshadow.cli.guestflags import guest_fields

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqQ probe@test"


def test_only_given_fields_are_sent(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text(f"# a comment\n{KEY}\n\n")
    data = tmp_path / "ud.yaml"
    data.write_text("#cloud-config\npackages: [nginx]\n")
    got = guest_fields("user", "probe", [pub], data, "20G")
    assert got == {
        "network": "user",
        "user": "probe",
        "ssh_keys": [KEY],
        "user_data": "#cloud-config\npackages: [nginx]\n",
        "disk_gib": 20,
    }
    assert guest_fields(None, None, None, None, None) == {}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n", "private key"),
        ("", "no key"),
        ("not a key at all\n", "OpenSSH public key"),
    ],
)
def test_bad_key_files_are_refused(tmp_path: Path, content: str, reason: str) -> None:
    key = tmp_path / "id"
    key.write_text(content)
    with pytest.raises(BadUsage, match=reason) as info:
        guest_fields(None, None, [key], None, None)
    assert info.value.field == "--ssh-key"
    assert "b3BlbnNzaC1rZXktdjEA" not in str(info.value)  # a key is never echoed


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("bridge:", None, None, None, None), "--network"),
        ((None, None, None, None, "1.5G"), "--disk"),
        ((None, None, [Path("/nonexistent.pub")], None, None), "--ssh-key"),
    ],
)
def test_bad_flags_name_themselves(args: tuple[object, ...], flag: str) -> None:
    with pytest.raises(BadUsage) as info:
        guest_fields(*args)  # type: ignore[arg-type]
    assert info.value.field == flag


def test_user_data_that_is_a_script_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "ud"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(BadUsage, match="cloud-config") as info:
        guest_fields(None, None, None, script, None)
    assert info.value.field == "--user-data"
