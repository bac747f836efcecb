"""sysstat's own files (recorded on a test machine, tests/data/sysstat/README.md),
read through sadf and paired by a manifest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.features import shadow_features
from vmshadow.predict.sar import SarError
from vmshadow.predict.sysstat import import_sysstat_history, read_sysstat
from vmshadow.predict.vmtypes import read_catalog

DATA = Path(__file__).parents[2] / "data" / "sysstat"
CATALOG = read_catalog(DATA / "vm-types.csv")


def _sadf_reads_them() -> str | None:
    """Why the files cannot be read here, or None."""
    if shutil.which("sadf") is None:
        return "sadf not installed (apt-get install sysstat)"
    done = subprocess.run(
        ["sadf", "-j", str(DATA / "wc-small-1.sa")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return f"this sadf cannot read sysstat 12.6 files: {done.stderr.strip()[:200]}"
    return None


_WHY_NOT = _sadf_reads_them()
pytestmark = [
    pytest.mark.subprocess,  # sadf is the reader
    pytest.mark.skipif(_WHY_NOT is not None, reason=str(_WHY_NOT)),
]


def test_a_recorded_run_reads_with_its_own_interval() -> None:
    shadow = read_sysstat(DATA / "wc-small-1.sa", vcpus=2)
    full = read_sysstat(DATA / "wc-big-1.sa", vcpus=2)
    assert shadow.interval_s == 1 and shadow.seconds == 19  # sadc 1 20: 19 intervals
    assert full.interval_s == 2 and full.seconds == 20  # sadc 2 11: 10 intervals of 2 s
    need = shadow.requirement()
    assert 1.5 < need.vcpus <= 2  # stress-ng kept both CPUs busy
    assert 0 < need.memory_mib < 24 * 1024
    assert shadow.forks.size == shadow.busy_vcpus.size and shadow.forks.max() > 10
    assert full.iops.max() > 100  # stress-ng --hdd wrote
    f = shadow_features(shadow, 4096)
    assert f["cpu_saturated"] > 0.5 and f["forks_total_log"] > 0


def test_manifest_pairs_the_runs() -> None:
    res = import_sysstat_history(DATA / "manifest.csv", CATALOG)
    assert res.unreadable == {} and res.runs == 2 and len(res.records) == 1
    rec = res.records[0]
    assert rec.job == "stress_mix" and rec.input == "small"
    assert rec.shadow.size.type == "lab.mem4" and rec.target.type == "lab.mem24"
    assert rec.shadow.interval_s == 1 and rec.observed_s == 20
    assert res.source is not None and res.source.name.startswith("sysstat:")


def test_bad_files_and_manifests_say_why(tmp_path: Path) -> None:
    with pytest.raises(SarError, match="recorded on 2 CPUs"):
        read_sysstat(DATA / "wc-small-1.sa", vcpus=8)
    junk = tmp_path / "junk.sa"
    junk.write_bytes(b"not a sysstat file")
    with pytest.raises(SarError, match="sadf refused it"):
        read_sysstat(junk, vcpus=2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("job,vm_type,file\nx,lab.mem4,\n")
    with pytest.raises(ConfigError, match="line 2: 'file'"):
        import_sysstat_history(manifest, CATALOG)
    manifest.write_text(f"job,vm_type,file\nx,lab.mem4,{junk}\nx,lab.mem24,{junk}\n")
    with pytest.raises(ConfigError, match="no usable") as caught:
        import_sysstat_history(manifest, CATALOG, option="DIR")
    assert caught.value.field == "DIR" and "sadf refused" in caught.value.reason


def test_missing_sadf_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SarError, match="sadf not found"):
        read_sysstat(DATA / "wc-small-1.sa", vcpus=2)
