"""YAML reading with positions."""

from __future__ import annotations

from shoal.manifest.reading import Mark, read_yaml


def test_positions_of_values_and_keys() -> None:
    doc = read_yaml("name: shop\nservices:\n  api:\n    port: 80800\n")
    assert doc.problems == []
    assert doc.values[("services", "api", "port")] == Mark(4, 11)
    assert doc.keys[("services", "api", "port")] == Mark(4, 5)
    assert doc.locate(("services", "api", "nothing", "deeper")) == Mark(4, 5)


def test_duplicate_keys_are_problems_but_merge_overrides_are_not() -> None:
    text = "base: &b {x: 1, y: 1}\nd:\n  <<: *b\n  y: 2\ne:\n  a: 1\n  a: 2\n"
    doc = read_yaml(text)
    assert doc.data["d"] == {"x": 1, "y": 2}
    assert len(doc.problems) == 1
    mark, path, message, hint = doc.problems[0]
    assert (mark.line, path, message) == (7, ("e", "a"), "duplicate key 'a'")
    assert "line 6" in hint


def test_syntax_error_is_located() -> None:
    doc = read_yaml("a: 1\nb: [1, 2\n")
    assert len(doc.problems) == 1
    mark, _, message, _ = doc.problems[0]
    assert message.startswith("YAML syntax error")
    assert mark.line >= 2


def test_non_string_keys_are_read_as_written() -> None:
    doc = read_yaml("80: a\ntrue: b\n")
    assert doc.data == {"80": "a", "true": "b"}


def test_complex_keys_and_recursion_are_problems() -> None:
    assert read_yaml("? [a]\n: 1\n").problems[0][2].startswith("a key must be a plain name")
    assert read_yaml("a: &x [*x]\n").problems[0][2] == "an alias refers to itself"


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a: &a [1,1,1,1,1,1,1,1,1]"]
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    doc = read_yaml("\n".join(lines))
    assert doc.data is None
    assert "expands to more than" in doc.problems[0][2]


def test_empty_document() -> None:
    doc = read_yaml("")
    assert doc.data is None and doc.problems == []


def test_lines_are_counted_as_editors_count_them() -> None:
    """YAML also breaks lines at NEL (U+0085) and U+2028/U+2029; positions follow ``\\n`` only,
    so a problem points at the line ``grep -n`` and an editor show."""
    doc = read_yaml("a: x\x85y\nb: [")
    assert doc.problems[0][0] == Mark(2, 1)
    doc = read_yaml("?\x850")
    assert doc.problems[0][0] == Mark(1, 4)
    doc = read_yaml("a: 'x\u2028y'\nb: 2\n")
    assert doc.values[("b",)] == Mark(2, 4)
