"""Rounding to the cheapest flavour that covers all three resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import Requirement
from vmshadow.predict.flavours import Flavour, cheapest_covering, read_flavours

CATALOGUE = """name,vcpus,memory_mib,price,iops
tiny,1,1024,0.01,500
cpu4,4,4096,0.10,3000
mem2,2,16384,0.08,3000
big,8,32768,0.40,
"""


def test_cheapest_covering_entry(tmp_path: Path) -> None:
    f = tmp_path / "flavours.csv"
    f.write_text(CATALOGUE)
    fl = read_flavours(f)
    assert cheapest_covering(fl, Requirement(0.5, 512, 100)).name == "tiny"
    # mem2 is cheaper than cpu4 and covers 2 vCPUs and 8 GiB.
    assert cheapest_covering(fl, Requirement(1.5, 8000, 100)).name == "mem2"
    assert cheapest_covering(fl, Requirement(3, 2000, 100)).name == "cpu4"
    # IOPS count too: only big (no cap) covers 5000.
    assert cheapest_covering(fl, Requirement(1, 512, 5000)).name == "big"
    assert cheapest_covering(fl, Requirement(16, 512, 1)) is None


def test_without_prices_the_smallest(tmp_path: Path) -> None:
    f = tmp_path / "flavours.csv"
    f.write_text("name,vcpus,memory_mib\nb,4,8192\na,2,8192\nc,2,4096\n")
    assert cheapest_covering(read_flavours(f), Requirement(1, 4000, 0)).name == "c"


@pytest.mark.parametrize(
    "text",
    [
        "name,cpus\nx,1\n",
        "name,vcpus,memory_mib\nx,one,1024\n",
        "name,vcpus,memory_mib,price\nx,1,1024,1\ny,2,2048,\n",
        "name,vcpus,memory_mib\n",
    ],
)
def test_bad_catalogues_name_the_option(tmp_path: Path, text: str) -> None:
    f = tmp_path / "flavours.csv"
    f.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_flavours(f)
    assert caught.value.field == "--flavours"


flavour = st.builds(
    Flavour,
    name=st.text("abc", min_size=1, max_size=3),
    vcpus=st.integers(1, 16),
    memory_mib=st.integers(256, 65536),
    price=st.floats(0.01, 10),
)


@given(st.lists(flavour, min_size=1, max_size=12), st.floats(0, 16), st.floats(0, 65536))
def test_the_choice_covers_and_none_cheaper_does(
    flavours: list[Flavour], cpu: float, mem: float
) -> None:
    need = Requirement(cpu, mem, 0)
    got = cheapest_covering(flavours, need)
    covering = [f for f in flavours if f.covers(need)]
    if got is None:
        assert not covering
    else:
        assert got.covers(need)
        assert all(got.price <= f.price for f in covering)  # type: ignore[operator]
