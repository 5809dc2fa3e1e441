"""${VAR} interpolation and .env parsing."""

from __future__ import annotations

import pytest

from shoal.manifest.interpolating import interpolate, interpolate_text, parse_dotenv

ENV = {"A": "x", "EMPTY": "", "PORT": "9000"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "x"),
        ("a-${A}-b-${A}", "a-x-b-x"),
        ("${MISSING:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${A:-dflt}", "x"),
        ("$${A}", "${A}"),
        ("price: $5", "price: $5"),
        ("$HOME stays", "$HOME stays"),
        ("${MISSING:-}", ""),
        ("http://127.0.0.1:${PORT:-8000}/x", "http://127.0.0.1:9000/x"),
    ],
)
def test_expansions(text: str, expected: str) -> None:
    assert interpolate_text(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${MISSING}", "is not set"),
        ("${MISSING:?give a token}", "give a token"),
        ("${EMPTY:?needed}", "needed"),
        ("${A", "not a valid variable reference"),
        ("${1A}", "not a valid variable reference"),
        ("${}", "not a valid variable reference"),
    ],
)
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"\$") as info:
        interpolate_text(text, ENV)
    assert fragment in info.value.args[0]


def test_unset_variable_hint_names_the_fix() -> None:
    with pytest.raises(ValueError, match="TOKEN") as info:
        interpolate_text("${TOKEN}", {})
    assert "TOKEN" in info.value.args[1] and ".env" in info.value.args[1]


def test_interpolate_walks_values_not_keys_and_reports_paths() -> None:
    data = {"${A}": {"list": ["${A}", "${NOPE}", 3]}, "n": None}
    out, problems = interpolate(data, ENV)
    assert out == {"${A}": {"list": ["x", "${NOPE}", 3]}, "n": None}
    assert [p.path for p in problems] == [("${A}", "list", 1)]


def test_dotenv() -> None:
    text = "\n".join(
        [
            "# comment",
            "A=1",
            "export B=two",
            'C="quoted # not a comment\\nnext"',
            "D='single $x'",
            "E=value # trailing comment",
            "F=",
            "not a pair",
            'G="unclosed',
        ]
    )
    values, problems = parse_dotenv(text)
    assert values == {
        "A": "1",
        "B": "two",
        "C": "quoted # not a comment\nnext",
        "D": "single $x",
        "E": "value",
        "F": "",
    }
    assert [p.line for p in problems] == [8, 9]
