"""The first-boot seed of a VM launched from a store image: what virt-install's
``--cloud-init`` gives, as cloud-init's NoCloud datasource reads it.

vmshadow's own part is a ``#cloud-config``: the host name, the user (the
image's default user unless ``--user`` names one) with the SSH keys, sudo
without a password for a named user (there is no password to give, as with
every cloud image), and the guest agent started, which is how vmshadow sees
the guest become ready. A user's ``--user-data`` is passed through as a
second part of a MIME multipart message, after ours: cloud-init merges the
parts in order, so where both set the same key, the user's wins.
"""

from __future__ import annotations

import email
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import yaml

from vmshadow.domain.vm import GuestSetup
from vmshadow.image.seed import check_user_data, write_seed

_MULTIPART = "content-type: multipart/"


def vmshadow_cloud_config(guest: GuestSetup, hostname: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hostname": hostname,
        "fqdn": hostname,
        "manage_etc_hosts": True,
        # cloud-init's locale step fails on images that generate no locale.
        "locale": "C.UTF-8",
        "ssh_pwauth": False,
    }
    if guest.user is None:
        doc["users"] = ["default"]
        if guest.ssh_keys:
            doc["ssh_authorized_keys"] = list(guest.ssh_keys)
    else:
        doc["users"] = [
            {
                "name": guest.user,
                "shell": "/bin/bash",
                "lock_passwd": True,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": list(guest.ssh_keys),
            }
        ]
    # Debian's and Ubuntu's images ship the agent but start it only when its
    # port appears at boot; starting it again is harmless.
    doc["runcmd"] = [["sh", "-c", "systemctl start qemu-guest-agent 2>/dev/null || true"]]
    return doc


def vm_user_data(guest: GuestSetup, hostname: str) -> str:
    """The seed's user-data: vmshadow's cloud-config, then the user's own, if any."""
    ours = "#cloud-config\n" + yaml.safe_dump(
        vmshadow_cloud_config(guest, hostname), sort_keys=False
    )
    if guest.user_data is None:
        return ours
    check_user_data(guest.user_data)
    msg = MIMEMultipart()
    msg.attach(MIMEText(ours, "cloud-config", "utf-8"))
    theirs = guest.user_data.lstrip("\ufeff")
    if theirs.lower().startswith(_MULTIPART):
        # Already multipart: its parts follow ours, each with its own type.
        for part in email.message_from_string(theirs).walk():
            if not part.is_multipart():
                msg.attach(part)
    else:
        msg.attach(MIMEText(theirs, "cloud-config", "utf-8"))
    return msg.as_string()


def write_vm_seed(path: Path, guest: GuestSetup, *, hostname: str, instance_id: str) -> None:
    """The VM's NoCloud seed ISO at ``path`` (0600: it may hold keys and secrets)."""
    write_seed(
        path,
        hostname=hostname,
        instance_id=instance_id,
        user_data=vm_user_data(guest, hostname),
    )
