"""What an exporter returns: the documents to write and the gaps the target cannot express.

Every exporter (``kubernetes``, ``swarm``, ``sam``, ``vm``) is a pure function
``Manifest -> Export`` (DESIGN.md §3). While it walks the manifest it keeps a :class:`Ledger`:
each setting it read is either *mapped* (the target says the same thing) or a :class:`Gap`
(the target cannot say it: what was done instead, and why). ``tests/exporters`` walks every
field of the schema and checks that each one ends up in one list or the other, so no setting is
ever dropped silently; ``shoal export`` prints the gaps as a table.

Documents are plain data (dicts and lists) or text; :func:`render` turns one into the bytes
written to a file, YAML for data (several documents in one file as a YAML stream).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True, order=True)
class Gap:
    """One setting the target cannot express as shoal means it.

    ``path`` is the dotted manifest path (``services.catalog.restart.backoff.factor``), ``value``
    the setting as written (rendered short), ``instead`` what the export does in its place ("" if
    nothing) and ``why`` the target's limit.
    """

    path: str
    value: str
    why: str
    instead: str = ""


@dataclass
class Ledger:
    """What an exporter did with each manifest setting: mapped, or reported as a gap."""

    mapped: set[str] = field(default_factory=set)
    gaps: list[Gap] = field(default_factory=list)

    def map(self, prefix: str, *names: str) -> None:
        """Mark ``prefix.name`` (or ``prefix`` itself with no names) as expressed by the target."""
        if not names:
            self.mapped.add(prefix)
        for name in names:
            self.mapped.add(f"{prefix}.{name}" if prefix else name)

    def gap(self, path: str, value: object, why: str, instead: str = "") -> None:
        """Report that the target cannot express ``path`` (its ``value``), and what it does."""
        self.gaps.append(Gap(path, _short(value), why, instead))

    def covers(self, path: str) -> bool:
        """Whether ``path`` (or one of its parents) was mapped or reported."""
        parts = path.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        return bool(prefixes & self.mapped) or any(g.path in prefixes for g in self.gaps)


def _short(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


@dataclass(frozen=True)
class Document:
    """One file of an export: its name relative to the output folder and its content.

    ``content`` is a mapping (one YAML/JSON document), a list of mappings (a YAML stream) or
    text written as is.
    """

    name: str
    content: dict[str, Any] | list[dict[str, Any]] | str


@dataclass(frozen=True)
class Export:
    """An exporter's answer: the documents and every gap, in manifest order."""

    target: str
    documents: tuple[Document, ...]
    gaps: tuple[Gap, ...]
    mapped: frozenset[str] = frozenset()

    def covers(self, path: str) -> bool:
        return Ledger(set(self.mapped), list(self.gaps)).covers(path)


def finish(target: str, documents: Iterable[Document], ledger: Ledger) -> Export:
    return Export(target, tuple(documents), tuple(ledger.gaps), frozenset(ledger.mapped))


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order written, long strings unfolded, multi-line text as |,
    and no anchors: a value used twice is written twice, as people and tools expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000)


def render(document: Document) -> str:
    """The text of a document: YAML (a stream when it holds several), or its text."""
    content = document.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join("---\n" + dump_yaml(item) for item in content)
    return dump_yaml(content)


__all__ = ["Document", "Export", "Gap", "Ledger", "dump_yaml", "finish", "render"]
