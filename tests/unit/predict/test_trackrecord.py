"""A model's held-out track record in words (CLI, web UI, plan)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmshadow.predict.trackrecord import track_record_text


def test_one_sentence_per_model_and_nothing_without_a_record() -> None:
    text = track_record_text(
        {
            "records": 228,
            "folds": 4,
            "margin_chosen_on_them": False,
            "resources": {
                "vcpus": {"under": 0.021, "waste": 0.2},
                "iops": {"under": 1.0, "waste": None},
            },
        }
    )
    assert text == (
        "On 228 history records of jobs its fold models had not seen (4 folds), this model's "
        "recommendation fell short for 2.1% (vCPU), 100.0% (IOPS) of them; where it sufficed, "
        "on average 20.0% (vCPU), - (IOPS) of it went unused."
    )
    assert track_record_text(None) is None
    assert track_record_text({"records": 0, "resources": {}}) is None


@pytest.mark.subprocess
def test_the_cli_client_says_it_without_numpy() -> None:
    code = (
        "import sys, vmshadow.cli.views, vmshadow.predict.trackrecord; "
        "sys.exit(1 if 'numpy' in sys.modules or 'sklearn' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
