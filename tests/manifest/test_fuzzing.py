"""Property-based: whatever the document, the loader raises ManifestError or returns a Manifest.

Thousands of generated documents in three families: valid manifests, valid manifests with one
value or key mutated, and garbage (random text and random YAML-able data). No other exception
may ever escape, and every problem must carry a position inside the document.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.errors import ManifestError
from shoal.manifest import parse_manifest


class MemoryFiles:
    """Handler files and folders for the cross-checks, in memory (DiskFiles is tested for real)."""

    def __init__(self) -> None:
        self.files = {"f.py": "def handler(event, context):\n    return {}\n"}
        self.dirs = {"web"}

    def is_dir(self, relative: str) -> bool:
        return relative.strip("./") in self.dirs

    def is_file(self, relative: str) -> bool:
        return relative in self.files

    def read_text(self, relative: str) -> str | None:
        return self.files.get(relative)

    def display(self, relative: str) -> str:
        return relative


FILES = MemoryFiles()
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
DURATIONS = st.sampled_from(["100ms", "1s", "1m30s", "2h", "0", "7d"])
PATHS = st.from_regex(r"/[a-z]{1,8}(/[a-z]{1,5})?", fullmatch=True)

LITERALS = st.text(max_size=5).map(lambda text: text.replace("$", "$$"))
"""Env values as a valid manifest writes them: a literal ``$`` doubled (``${`` alone is refused)."""
SERVICES = st.fixed_dictionaries(
    {"command": st.sampled_from([["python3", "app.py"], "python3 -m http.server"])},
    optional={
        "replicas": st.integers(0, 5),
        "env": st.dictionaries(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), LITERALS),
        "health": st.fixed_dictionaries({"http": st.just("/healthz"), "interval": DURATIONS}),
        "restart": st.sampled_from(["always", "on-failure", "never"]),
        "stop_grace_period": DURATIONS,
        "resources": st.fixed_dictionaries({"memory": st.sampled_from(["64M", "1Gi"])}),
        "workdir": st.just("web"),
    },
)
FUNCTIONS = st.fixed_dictionaries(
    {"handler": st.just("f.py:handler")},
    optional={
        "memory": st.sampled_from(["128M", "256Mi"]),
        "timeout": DURATIONS,
        "max_instances": st.integers(1, 200),
        "triggers": st.lists(
            st.one_of(
                st.builds(lambda p: {"http": {"path": p}}, PATHS),
                st.sampled_from([{"schedule": "rate(5 minutes)"}, {"schedule": "0 2 * * *"}]),
            ),
            max_size=2,
        ),
    },
)
VALID = st.fixed_dictionaries(
    {"name": NAMES},
    optional={
        "gateway": st.fixed_dictionaries({"port": st.integers(1024, 65535)}),
        "services": st.dictionaries(NAMES, SERVICES, max_size=3),
        "functions": st.dictionaries(NAMES, FUNCTIONS, max_size=2),
        "topics": st.dictionaries(NAMES, st.just({"retention": "1d"}), max_size=2),
    },
)
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def errors_of(text: str) -> ManifestError | None:
    """The loader's error for ``text``, or None; any other exception fails the test."""
    try:
        parse_manifest(text, "shoal.yaml", {}, FILES)
    except ManifestError as exc:
        return exc
    return None


def load(text: str) -> None:
    error = errors_of(text)
    if error is None:
        return
    assert error.problems, "a ManifestError always lists at least one problem"
    lines = text.count("\n") + 1
    for problem in error.problems:
        assert problem.message
        assert 0 <= problem.line <= lines + 1, problem


def mutate(doc: Any, data: st.DataObject) -> Any:
    """Replace one value (or add one key) somewhere in ``doc`` with junk."""
    if isinstance(doc, dict) and doc and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(doc)))
        return {**doc, key: mutate(doc[key], data)}
    if isinstance(doc, list) and doc and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(doc) - 1))
        return [*doc[:i], mutate(doc[i], data), *doc[i + 1 :]]
    if isinstance(doc, dict) and data.draw(st.booleans()):
        return {**doc, data.draw(st.text(max_size=8)): data.draw(JUNK)}
    return data.draw(JUNK)


FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(VALID)
def test_valid_documents_load(doc: dict[str, Any]) -> None:
    error = errors_of(yaml.safe_dump(doc, sort_keys=False))
    # Generated documents can legitimately clash (two routes on one path, duplicate names).
    allowed = ("already taken", "already used", "is not declared", "cannot all listen")
    problems = error.problems if error else []
    assert all(any(a in p.message for a in allowed) for p in problems), error


@FAST
@given(VALID, st.data())
def test_mutated_documents_fail_cleanly(doc: dict[str, Any], data: st.DataObject) -> None:
    load(yaml.safe_dump(mutate(doc, data), sort_keys=False, allow_unicode=True))


@FAST
@given(st.text(max_size=200))
def test_garbage_text_fails_cleanly(text: str) -> None:
    load(text)


@FAST
@given(JUNK)
def test_garbage_data_fails_cleanly(junk: Any) -> None:
    load(yaml.safe_dump(junk, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="{}[]:,-&*!|>'\"#%@ \n\tab01$", max_size=80))
def test_yaml_punctuation_soup_fails_cleanly(text: str) -> None:
    load(text)
