"""``python -m vmshadow.cli``: the same as the ``vmshadow`` command (the tests
run it so, with the interpreter under test)."""

from vmshadow.cli.main import main

main()
