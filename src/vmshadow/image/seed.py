"""cloud-init NoCloud seed ISOs, written in Python (pycdlib), with no shell tools.

cloud-init's NoCloud datasource finds a file system labelled ``cidata`` and
reads ``meta-data``, ``user-data`` and, if present, ``network-config`` from
its root; this is what ``genisoimage -V cidata -J -r`` makes and what
virt-install's ``--cloud-init`` attaches. Names are stored three ways: plain
ISO 9660 (upper case, as the standard requires), Rock Ridge and Joliet, so
the guest's kernel shows them in lower case with their dashes whichever
extension it reads.

    write_seed(Path("seed.iso"), hostname="web1", instance_id="i-web1",
               user_data="#cloud-config\\nusers: [default]\\n")
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pycdlib
import yaml

from vmshadow.domain.errors import ConfigError

VOLUME_LABEL = "cidata"
# RFC 1123 host names: what cloud-init will accept as local-hostname and set.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The two user-data forms cloud-init reads as configuration (not as a script to run).
_CLOUD_CONFIG = "#cloud-config"
_MULTIPART = "content-type: multipart/"
# (ISO 9660 level-3 name, Rock Ridge and Joliet name)
_NAMES = {
    "meta-data": "META_DATA.;1",
    "user-data": "USER_DATA.;1",
    "network-config": "NETWORK_CONFIG.;1",
}


def meta_data(*, hostname: str, instance_id: str) -> str:
    if not _HOSTNAME.fullmatch(hostname):
        raise ConfigError("hostname", f"{hostname!r} is not a valid host name (RFC 1123)")
    if not _INSTANCE_ID.fullmatch(instance_id):
        raise ConfigError(
            "instance_id", f"{instance_id!r}: use letters, digits, '.', '_' or '-' (at most 128)"
        )
    # cloud-init runs its per-instance modules again when instance-id changes.
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname})


def check_user_data(user_data: str) -> None:
    """Refuse user-data cloud-init would not read as configuration."""
    head = user_data.lstrip("\ufeff")
    if head.lower().startswith(_MULTIPART):
        return
    if not (
        head.startswith(_CLOUD_CONFIG)
        and head[len(_CLOUD_CONFIG) : len(_CLOUD_CONFIG) + 1] in ("", "\n", "\r")
    ):
        raise ConfigError(
            "user_data", "must start with a '#cloud-config' line or be MIME multipart"
        )
    try:
        parsed = yaml.safe_load(head)
    except yaml.YAMLError as exc:
        raise ConfigError("user_data", f"#cloud-config is not valid YAML: {exc}") from exc
    if parsed is not None and not isinstance(parsed, dict):
        raise ConfigError("user_data", "#cloud-config must be a YAML mapping")


def check_network_config(network_config: str) -> None:
    try:
        parsed = yaml.safe_load(network_config)
    except yaml.YAMLError as exc:
        raise ConfigError("network_config", f"not valid YAML: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigError("network_config", "must be a YAML mapping (network config v1 or v2)")


def seed_files(
    *, hostname: str, instance_id: str, user_data: str, network_config: str | None = None
) -> dict[str, bytes]:
    """The files of a seed, checked; ``network-config`` only when one is given."""
    check_user_data(user_data)
    files = {
        "meta-data": meta_data(hostname=hostname, instance_id=instance_id).encode(),
        "user-data": user_data.encode(),
    }
    if network_config is not None:
        check_network_config(network_config)
        files["network-config"] = network_config.encode()
    return files


def write_seed(
    path: Path,
    *,
    hostname: str,
    instance_id: str,
    user_data: str,
    network_config: str | None = None,
    mode: int = 0o600,
) -> None:
    """Write a NoCloud seed ISO to ``path`` (created with ``mode``: it may hold keys).

    The file appears whole or not at all: it is written beside ``path`` and
    renamed into place.
    """
    files = seed_files(
        hostname=hostname,
        instance_id=instance_id,
        user_data=user_data,
        network_config=network_config,
    )
    iso = pycdlib.PyCdlib()
    # Level 3 allows the long plain names; Joliet 3 and Rock Ridge 1.09 are what
    # genisoimage -J -r write.
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
    try:
        for name, data in files.items():
            iso.add_fp(
                io.BytesIO(data),
                len(data),
                iso_path=f"/{_NAMES[name]}",
                rr_name=name,
                joliet_path=f"/{name}",
                file_mode=0o100444,
            )
        partial = path.with_name(f".{path.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                iso.write_fp(out)
            os.chmod(partial, mode)  # the umask may have narrowed os.open's mode
            partial.rename(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    finally:
        iso.close()
