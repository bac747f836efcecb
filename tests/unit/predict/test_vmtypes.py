"""VM type catalogues: header-driven, families sorted by size."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.vmtypes import read_catalog

MINI = Path(__file__).parents[2] / "data" / "lumos-mini"


def test_lumos_catalogue() -> None:
    cat = read_catalog(MINI / "vm-types.csv")
    fams = cat.families()
    assert set(fams) == {"c5", "m5", "r5"}
    assert [t.vcpus for t in fams["m5"]] == [2, 4, 8]
    assert fams["r5"][0].memory_mib == 16 * 1024


def test_other_cloud_columns_in_any_order(tmp_path: Path) -> None:
    f = tmp_path / "types.csv"
    f.write_text("memory_mib,name,vcpus,family,iops\n8192,big,4,f,3000\n2048,small,1,f,\n")
    cat = read_catalog(f)
    assert [t.name for t in cat.families()["f"]] == ["small", "big"]
    assert cat.types["big"].iops == 3000
    assert cat.types["small"].iops is None


@pytest.mark.parametrize(
    "text",
    [
        "name,cpus\nx,1\n",
        "vm_type,family,vcpus,memory_gib\nx,f,two,4\n",
        "vm_type,family,vcpus,memory_gib\n",
    ],
)
def test_bad_catalogues_name_the_option(tmp_path: Path, text: str) -> None:
    f = tmp_path / "types.csv"
    f.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_catalog(f)
    assert caught.value.field == "--catalog"
    with pytest.raises(ConfigError, match="cannot read"):
        read_catalog(tmp_path / "missing.csv")
