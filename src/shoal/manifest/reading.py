"""Reading YAML while keeping where every key and value came from.

First step of the loading flow (reading -> interpolating -> schema validation -> checking): the
text becomes plain Python data (dicts, lists, scalars) plus a map from each path in that data,
``("services", "api", "port")``, to its line and column, so that every later problem can point at
the exact place in the file. YAML errors, duplicate keys, non-string keys and recursive aliases
become problems here instead of exceptions.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """1-based line and column."""

    line: int
    column: int


@dataclass
class Document:
    """YAML turned into data, with the position of every value and every mapping key."""

    data: Any
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)
    problems: list[tuple[Mark, Path, str, str]] = field(default_factory=list)

    def locate(self, path: Path, *, key: bool = False) -> Mark:
        """The closest known position of ``path``: itself, else its nearest ancestor."""
        probe = path
        while True:
            if key and probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return Mark(1, 1)
            probe = probe[:-1]


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
"""Composes nodes with marks; libyaml's parser when the PyYAML wheel has it."""

MAX_NODES = 200_000
"""Most values a manifest may expand to, aliases included."""


class _TooLarge(Exception):
    pass


class _Lines:
    """Line and column of a character offset, counting lines the way ``grep -n`` and editors do.

    YAML also breaks lines at NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR (U+0085, U+2028,
    U+2029), so in a file holding one of them the parser's own line numbers point past the line
    a user would look at. Positions are therefore taken from the parser's character offset.
    """

    def __init__(self, text: str) -> None:
        self.starts = [0]
        at = text.find("\n")
        while at >= 0:
            self.starts.append(at + 1)
            at = text.find("\n", at + 1)

    def at(self, index: int) -> Mark:
        line = bisect_right(self.starts, index)
        return Mark(line, index - self.starts[line - 1] + 1)


class _Builder:
    """Walks a composed node tree into data, recording marks on the way."""

    def __init__(self, loader: Any, doc: Document, lines: _Lines) -> None:
        self.loader = loader
        self.doc = doc
        self.lines = lines
        self.active: set[int] = set()  # nodes on the current path: catches recursive aliases
        self.budget = MAX_NODES  # aliases can expand exponentially ("billion laughs")

    def build(self, node: Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge
        self.doc.values[path] = self._mark(node)
        if id(node) in self.active:
            self._problem(node, path, "an alias refers to itself", "YAML anchors may not recurse")
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            return None  # pragma: no cover - the composer makes no other node kinds
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except ConstructorError as exc:
            self._problem(node, path, f"cannot read this value: {exc.problem}", "")
            return None

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        try:
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        except ConstructorError as exc:
            self._problem(node, path, f"cannot merge: {exc.problem}", "")
        merged = len(node.value) - explicit  # merged pairs come first; explicit ones override
        out: dict[Any, Any] = {}
        written: set[str] = set()  # keys written in this mapping itself, not merged in
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, ScalarNode):
                self._problem(
                    key_node, path, "a key must be a plain name, not a list or mapping", ""
                )
                continue
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                # YAML reads `80:` as an int and `yes:` as a bool; names are always strings here.
                key = key_node.value
            child = (*path, key)
            if index >= merged and key in written:
                first = self.doc.keys[child]
                self._problem(
                    key_node,
                    child,
                    f"duplicate key {key!r}",
                    f"first given on line {first.line}; YAML keeps only the last one",
                )
            self.doc.keys[child] = self._mark(key_node)
            if index >= merged:
                written.add(key)
            out[key] = self.build(value_node, child)
        return out

    def _mark(self, node: Node) -> Mark:
        return self.lines.at(node.start_mark.index)

    def _problem(self, node: Node, path: Path, message: str, hint: str) -> None:
        self.doc.problems.append((self._mark(node), path, message, hint))


def read_yaml(text: str) -> Document:
    """Parse one YAML document. Syntax errors become a single problem at their position."""
    doc = Document(data=None)
    lines = _Lines(text)
    loader: Any = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is not None:
            doc.data = _Builder(loader, doc, lines).build(node, ())
    except _TooLarge:
        doc.problems.append(
            (Mark(1, 1), (), f"the document expands to more than {MAX_NODES} values", "")
        )
        doc.data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = lines.at(mark.index) if mark else Mark(1, 1)
        message = exc.problem or exc.context or "invalid YAML"
        doc.problems.append((where, (), f"YAML syntax error: {message}", ""))
        doc.data = None
    except yaml.YAMLError as exc:  # reader errors: bad bytes, control characters
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        doc.problems.append((Mark(1, 1), (), f"cannot read the file as YAML: {first}", ""))
        doc.data = None
    finally:
        if loader is not None:
            loader.dispose()
    return doc


__all__ = ["Document", "Mark", "Path", "read_yaml"]
