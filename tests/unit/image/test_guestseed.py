"""A launched VM's seed: vmshadow's cloud-config (user, keys, host name), and
the user's own user-data after it, as MIME parts cloud-init merges in order."""

from __future__ import annotations

import email

import yaml

from vmshadow.domain.vm import GuestSetup
from vmshadow.image.guestseed import vm_user_data

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqQ probe@test"


def test_a_named_user_gets_the_keys_and_passwordless_sudo() -> None:
    text = vm_user_data(GuestSetup(user="probe", ssh_keys=(KEY,)), "web1")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["hostname"] == "web1" and doc["ssh_pwauth"] is False
    (user,) = doc["users"]
    assert user["name"] == "probe" and user["ssh_authorized_keys"] == [KEY]
    assert user["lock_passwd"] is True and user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"


def test_without_a_user_the_image_default_user_gets_the_keys() -> None:
    doc = yaml.safe_load(vm_user_data(GuestSetup(ssh_keys=(KEY,)), "web1"))
    assert doc["users"] == ["default"] and doc["ssh_authorized_keys"] == [KEY]


def test_user_data_follows_ours_as_its_own_part() -> None:
    mine = "#cloud-config\npackages: [nginx]\n"
    msg = email.message_from_string(vm_user_data(GuestSetup(user_data=mine), "web1"))
    parts = [p for p in msg.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in parts] == ["text/cloud-config"] * 2
    payloads = [p.get_payload(decode=True).decode() for p in parts]  # type: ignore[union-attr]
    assert yaml.safe_load(payloads[0])["hostname"] == "web1" and payloads[1] == mine


def test_multipart_user_data_keeps_each_of_its_parts() -> None:
    theirs = (
        'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n'
        "--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n"
        "--XX\nContent-Type: text/cloud-config\n\n#cloud-config\nruncmd: [ls]\n--XX--\n"
    )
    msg = email.message_from_string(vm_user_data(GuestSetup(user_data=theirs), "web1"))
    types = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
    assert types == ["text/cloud-config", "text/x-shellscript", "text/cloud-config"]
