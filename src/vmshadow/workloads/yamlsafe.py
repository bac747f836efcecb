"""Bounded YAML for files a user hands vmshadow (workload profiles).

``yaml.safe_load`` is safe from code execution but not from cost or crashes:
a 9x9 alias bomb ran past 60 s at 2.6 GB, ``x: &r [*r]`` and a 5,000-deep list
ended in ``RecursionError``, a 5,000-digit integer in ``ValueError`` and
``.inf`` or ``1e400`` passed as numbers. A profile needs none of that, so this
loader refuses anchors and aliases outright (rather than bounding their
expansion), bounds the size, the nesting depth and the number of nodes, keeps
integers short and floats finite, and turns every failure into a
``ConfigError`` naming ``<file>:<line>``.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent

from vmshadow.domain.errors import ConfigError

MAX_BYTES = 256 * 1024  # a profile with the largest inline fio job is under 70 KiB
MAX_DEPTH = 32  # a profile nests three levels; a list of 5,000 hit RecursionError
MAX_NODES = 10_000  # a profile has a few dozen; bounds the time of a flat 256 KiB list
MAX_INT_CHARS = 32  # past int64 and far past any bound a field has (Python refuses 4,300)


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` without anchors or aliases, with depth and node bounds."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            # Refused at the first sight, before the composer expands anything.
            raise ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed", event.start_mark
            )
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"more than {MAX_NODES} values", event.start_mark)
        try:
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[no-untyped-call]
        except (ValueError, OverflowError) as exc:
            # e.g. a timestamp 2001-02-30: the constructors raise plain ValueError.
            if isinstance(exc, yaml.YAMLError):
                raise
            raise ConstructorError(None, None, str(exc), node.start_mark) from exc

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if len(text) > MAX_INT_CHARS:
            raise ConstructorError(
                None, None, f"an integer of more than {MAX_INT_CHARS} characters", node.start_mark
            )
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(
                None, None, f"{node.value!r} is not a finite number", node.start_mark
            )
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def load(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The document in ``text`` and its node tree (for line numbers).

    Raises ``ConfigError`` whose field is ``<source>:<line>`` (or ``<source>``
    for the size) and nothing else.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise ConfigError(source, f"a profile file is at most {MAX_BYTES} bytes, not {size}")
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here
        try:
            node = loader.get_single_node()
            data = None if node is None else loader.construct_document(node)  # type: ignore[no-untyped-call]
        finally:
            loader.dispose()  # type: ignore[no-untyped-call]
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(f"{source}:{line}", f"not valid YAML: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    return data, node


def read(path: str, source: str | None = None) -> str:
    """The text of a YAML file, at most ``MAX_BYTES`` read, as a ``ConfigError`` on failure."""
    where = source or path
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(where, f"cannot read the file: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError(where, f"a profile file is at most {MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{where}:{line}", "not UTF-8 text") from exc
