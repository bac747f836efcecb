"""No shell anywhere in the product: every command is an argv list.

An AST walk over src/ (not a grep: it sees through formatting and aliases of
the keyword) refuses ``shell=`` with anything but a literal False, and the
functions that always go through a shell.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.security

SRC = Path(__file__).resolve().parents[2] / "src"
SHELL_FUNCTIONS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}


def _offences(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                found.append((node.lineno, "shell= other than False"))
            if kw.arg is None:  # **kwargs could smuggle shell=True in
                found.append((node.lineno, "**kwargs in a call (could carry shell=True)"))
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and (f.value.id, f.attr) in SHELL_FUNCTIONS
        ):
            found.append((node.lineno, f"{f.value.id}.{f.attr} runs a shell"))
    return found


def test_the_checker_finds_what_it_looks_for() -> None:
    bad = "import os, subprocess\nsubprocess.run('x', shell=True)\nos.system('x')\n"
    assert [line for line, _ in _offences(ast.parse(bad))] == [2, 3]
    assert _offences(ast.parse("subprocess.run(['x'], shell=False)\n")) == []


def test_no_shell_in_src() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    offences = []
    for path in files:
        for line, what in _offences(ast.parse(path.read_text(), str(path))):
            # **kwargs calls are fine unless they reach a process: list them only there.
            if what.startswith("**") and "subprocess" not in path.read_text():
                continue
            offences.append(f"{path.relative_to(SRC)}:{line}: {what}")
    assert offences == []
