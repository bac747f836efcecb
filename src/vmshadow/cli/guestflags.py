"""``vmshadow launch``'s options for a VM from a store image, as virt-install
and cloud-init users know them: ``--network``, ``--user``, ``--ssh-key``
(repeatable), ``--user-data`` and ``--disk``.

Files are read here, on the user's side: the service receives their content,
never a path. A private key given by mistake is refused before anything is
sent (its content is never echoed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vmshadow.cli.checks import BadUsage, parse_memory_mib
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.vm import MAX_USER_DATA_BYTES, check_ssh_keys, parse_network
from vmshadow.image.seed import check_user_data

MAX_KEY_FILE_BYTES = 64 * 1024

NetworkOpt = Annotated[
    str | None,
    typer.Option(
        help="Store image: a libvirt network NAME, bridge:BR, user (SSH forwarded from "
        "127.0.0.1) or none. Default: the service's vm.default_network (auto).",
    ),
]
UserOpt = Annotated[
    str | None,
    typer.Option(help="Store image: the user cloud-init creates (default: the image's own)."),
]
SshKeyOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--ssh-key", help="Store image: a public key file (.pub) for the user; repeatable."
    ),
]
UserDataOpt = Annotated[
    Path | None,
    typer.Option(help="Store image: #cloud-config or MIME multipart file, run after ours."),
]
DiskOpt = Annotated[
    str | None,
    typer.Option(help="Store image: root disk size, e.g. 20G (default: the image's size)."),
]


def _read(path: Path, flag: str, limit: int) -> str:
    try:
        data = path.read_bytes()[: limit + 1]
    except OSError as exc:
        raise BadUsage(flag, f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise BadUsage(flag, f"{path} is larger than {limit // 1024} KiB")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise BadUsage(flag, f"{path} is not UTF-8 text") from exc


def ssh_key_lines(paths: list[Path]) -> list[str]:
    keys: list[str] = []
    for path in paths:
        text = _read(path, "--ssh-key", MAX_KEY_FILE_BYTES)
        if "PRIVATE KEY" in text:
            raise BadUsage("--ssh-key", f"{path} is a private key: give the .pub file")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        try:
            keys.extend(check_ssh_keys(tuple(lines)))
        except ConfigError as exc:
            raise BadUsage("--ssh-key", f"{path}: {exc.reason}") from exc
        if not lines:
            raise BadUsage("--ssh-key", f"{path} holds no key")
    return keys


def disk_gib(text: str) -> int:
    mib = parse_memory_mib(text, "--disk")
    if mib % 1024:
        raise BadUsage("--disk", f"{text!r}: give whole GiB, e.g. 20G")
    return mib // 1024


def guest_fields(
    network: str | None,
    user: str | None,
    ssh_keys: list[Path] | None,
    user_data: Path | None,
    disk: str | None,
) -> dict[str, Any]:
    """The request's guest fields, only those given (the service decides the rest)."""
    body: dict[str, Any] = {}
    if network is not None:
        try:
            if network != "auto":
                parse_network(network)
        except ConfigError as exc:
            raise BadUsage("--network", exc.reason) from exc
        body["network"] = network
    if user is not None:
        body["user"] = user
    if ssh_keys:
        body["ssh_keys"] = ssh_key_lines(ssh_keys)
    if user_data is not None:
        text = _read(user_data, "--user-data", MAX_USER_DATA_BYTES)
        try:
            check_user_data(text)
        except ConfigError as exc:
            raise BadUsage("--user-data", f"{user_data}: {exc.reason}") from exc
        body["user_data"] = text
    if disk is not None:
        body["disk_gib"] = disk_gib(disk)
    return body
