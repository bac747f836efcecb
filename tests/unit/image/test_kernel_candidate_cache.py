"""The kernel apt-cache points at is asked once per apt state, not at every
``vmshadow plan`` (two ``apt-cache show`` calls cost 1.5 s of each)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmshadow.image import builder


@pytest.fixture
def asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    state = tmp_path / "pkgcache.bin"
    state.write_text("v1")
    monkeypatch.setattr(builder, "APT_STATE", (state,))
    calls: list[int] = []

    def ask() -> tuple[str, str]:
        calls.append(1)
        return "linux-image-6.1.0-99-cloud-amd64", f"6.1.{len(calls)}"

    monkeypatch.setattr(builder, "_ask_apt_cache", ask)
    return calls


def test_the_answer_is_kept_while_apt_is_unchanged(tmp_path: Path, asked: list[int]) -> None:
    cache = tmp_path / "images"
    cache.mkdir()
    first = builder.kernel_candidate(cache)
    assert builder.kernel_candidate(cache) == first and len(asked) == 1
    # An apt-get update or an install: asked again.
    state = builder.APT_STATE[0]
    state.write_text("v2, longer")
    os.utime(state, ns=(1, 1))
    assert builder.kernel_candidate(cache) == ("linux-image-6.1.0-99-cloud-amd64", "6.1.2")
    assert len(asked) == 2


def test_a_broken_cache_or_none_asks_apt(tmp_path: Path, asked: list[int]) -> None:
    cache = tmp_path / "images"
    cache.mkdir()
    (cache / builder.KERNEL_CACHE).write_text("{not json")
    builder.kernel_candidate(cache)
    builder.kernel_candidate(None)
    builder.kernel_candidate(tmp_path / "missing")  # no folder: nothing written
    assert len(asked) == 3 and not (tmp_path / "missing").exists()
    assert builder.kernel_candidate(cache)[1] == "6.1.1"  # the repaired cache
