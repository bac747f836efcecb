"""Settings: defaults < TOML file < environment < overrides, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmshadow.config import load_settings
from vmshadow.domain.errors import ConfigError


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    s = load_settings(config_path=tmp_path / "missing.toml", environ={})
    assert s.libvirt_uri == "qemu:///system"
    assert (s.shadow.vcpus, s.shadow.memory_mib) == (1, 512)
    assert s.accelerator == "auto"
    assert s.runs_dir == s.data_dir / "runs"


def test_layers_override_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('libvirt_uri = "test:///default"\n[shadow]\nmemory_mib = 768\nvcpus = 2\n')
    s = load_settings(
        {("shadow", "vcpus"): 3},
        config_path=cfg,
        environ={"VMSHADOW_SHADOW_MEMORY_MIB": "1024"},
    )
    assert s.libvirt_uri == "test:///default"  # file
    assert s.shadow.memory_mib == 1024  # environment beats file
    assert s.shadow.vcpus == 3  # override beats both


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[shadow]\nmemory_mib = 16\n", "shadow.memory_mib"),
        ('accelerator = "xen"\n', "accelerator"),
        ("[shadow]\ncolour = 1\n", "shadow.colour"),
        ("nonsense = true\n", "nonsense"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, toml: str, field: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=cfg, environ={})
    assert caught.value.field == field
    assert str(caught.value)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("shadow = [\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=cfg, environ={})
    assert str(cfg) in str(caught.value)


def test_one_local_host_by_default(tmp_path: Path) -> None:
    s = load_settings(
        {("libvirt_uri",): "test:///default"}, config_path=tmp_path / "no.toml", environ={}
    )
    assert [(h.name, h.uri) for h in s.host_pool] == [("local", "test:///default")]


def test_hosts_from_file_and_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[hosts]]\nname = "a"\nuri = "qemu:///system"\n')
    s = load_settings(config_path=cfg, environ={})
    assert [(h.name, h.uri) for h in s.host_pool] == [("a", "qemu:///system")]
    env = {"VMSHADOW_HOSTS": "a=test:///a.xml, b=qemu+ssh://root@b/system"}
    s = load_settings(config_path=cfg, environ=env)
    assert [(h.name, h.uri) for h in s.host_pool] == [
        ("a", "test:///a.xml"),
        ("b", "qemu+ssh://root@b/system"),
    ]


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ("a=qemu:///system,b", "hosts.1"),
        ("a=x,a=y", "hosts"),
        ("bad name=qemu:///system", "hosts.0.name"),
    ],
)
def test_bad_hosts_name_the_field(tmp_path: Path, env: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=tmp_path / "no.toml", environ={"VMSHADOW_HOSTS": env})
    assert caught.value.field == field
