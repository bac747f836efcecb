"""The log formats: text, and JSON lines that a collector parses, uvicorn's
access lines included."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from vmshadow.ops import logs
from vmshadow.ops.settings import LogSettings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in err.splitlines() if ln.strip()]


def test_json_lines_for_our_loggers_and_uvicorns(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(LogSettings(level="info", format="json"))
    logging.getLogger("vmshadow.controller").info("transition %s predicted", "t1")
    logging.getLogger("vmshadow.controller").debug("not at info")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/api/v1/health", "1.1", 200
    )
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("vmshadow.api").exception("failed")
    got = lines(capsys.readouterr().err)
    assert [g["message"] for g in got][:1] == ["transition t1 predicted"]
    assert got[0]["level"] == "info" and got[0]["logger"] == "vmshadow.controller"
    assert str(got[0]["ts"]).endswith("+00:00")
    access = got[1]
    assert access["logger"] == "uvicorn.access"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/api/v1/health", 200)
    assert "ValueError: boom" in str(got[2]["exc"])
    assert len(got) == 3


def test_text_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(LogSettings(level="warning", format="text"))
    logging.getLogger("vmshadow.x").info("quiet")
    logging.getLogger("uvicorn.error").warning("loud")
    err = capsys.readouterr().err
    assert "quiet" not in err and "WARNING uvicorn.error: loud" in err
