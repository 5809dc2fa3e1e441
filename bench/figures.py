"""What a benchmark reports: figures, their baselines and targets, and the JSON line they travel in.

A benchmark script ends by printing one ``Result`` as one JSON line (``bench.harness.main`` does
it); the runner (``python -m bench``) parses it back with ``Result.from_json`` and renders it
(``bench.reporting``). Pure data and arithmetic: no clocks, no I/O.

One script's JSON line::

    {"schema": 1, "bench": "cli", "quick": true, "seconds": 21.4,
     "figures": [
       {"name": "validate, subprocess, median", "value": 702.1, "unit": "ms",
        "baseline": {"name": "python3 -c pass, median", "value": 29.3},
        "ratio": 23.96,
        "target": {"text": "<= 3x", "op": "<=", "bound": 3.0, "on": "ratio", "source": "ours"},
        "met": false, "samples": 10, "cv": 0.04, "note": "..."}],
     "machine": {"cpus": 2, "loadavg_before": [...], "loadavg_after": [...],
                 "calibration": {"median_ms": ..., "cv": ...}, ...}}

``ratio`` is always ``value / baseline.value``, whatever the direction of "better": a latency
target reads ``<= 3x``, a throughput target ``>= 0.85x``. A target ``on`` ``"value"`` bounds the
figure itself (``p99 <= 20 ms``). ``source`` says whose target it is: ``"ours"`` (set in the
script, informative) or ``"DESIGN.md §6"`` (a promise of the design). ``met`` is null when there is
no target. ``cv`` is the coefficient of variation of the figure's own samples, a noise indicator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

SCHEMA = 1
Op = Literal["<=", ">="]
On = Literal["ratio", "value"]
T = TypeVar("T")


@dataclass(frozen=True)
class Baseline:
    """The same thing done the ordinary way, measured in the same run, in the figure's unit."""

    name: str
    value: float


@dataclass(frozen=True)
class Target:
    """A bound on the figure's ratio to its baseline, or on its value."""

    op: Op
    bound: float
    on: On = "ratio"
    source: str = "ours"

    def text(self, unit: str = "") -> str:
        """``<= 3x`` for a ratio, ``<= 20 ms`` for a value."""
        if self.on == "ratio":
            return f"{self.op} {self.bound:g}x"
        return f"{self.op} {self.bound:g} {unit}".rstrip()

    def met(self, value: float, ratio: float | None) -> bool | None:
        """Whether ``value`` (or ``ratio``) is within the bound; None if there is no ratio."""
        subject = ratio if self.on == "ratio" else value
        if subject is None:
            return None
        return subject <= self.bound if self.op == "<=" else subject >= self.bound


def at_most(bound: float, *, on: On = "ratio", source: str = "ours") -> Target:
    """A target for figures where lower is better (latency, memory)."""
    return Target("<=", float(bound), on, source)


def at_least(bound: float, *, on: On = "ratio", source: str = "ours") -> Target:
    """A target for figures where higher is better (throughput)."""
    return Target(">=", float(bound), on, source)


@dataclass(frozen=True)
class Figure:
    """One measured number, with what to compare it to."""

    name: str
    value: float
    unit: str
    baseline: Baseline | None = None
    target: Target | None = None
    samples: int | None = None
    cv: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline.value == 0:
            return None
        return self.value / self.baseline.value

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        target: dict[str, Any] | None = None
        if self.target is not None:
            target = {
                "text": self.target.text(self.unit),
                "op": self.target.op,
                "bound": self.target.bound,
                "on": self.target.on,
                "source": self.target.source,
            }
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": (
                None
                if self.baseline is None
                else {"name": self.baseline.name, "value": self.baseline.value}
            ),
            "ratio": self.ratio,
            "target": target,
            "met": self.met,
            "samples": self.samples,
            "cv": self.cv,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: object) -> Figure:
        """Parse one figure, raising ValueError that names the bad field."""
        d = _mapping(data, "figure")
        name = _field(d, "name", str, "figure")
        where = f"figure {name!r}"
        baseline = None
        if d.get("baseline") is not None:
            b = _mapping(d["baseline"], f"{where}: baseline")
            baseline = Baseline(
                _field(b, "name", str, f"{where}: baseline"),
                _number(b, "value", f"{where}: baseline"),
            )
        target = None
        if d.get("target") is not None:
            t = _mapping(d["target"], f"{where}: target")
            op, on = t.get("op"), t.get("on", "ratio")
            if op not in ("<=", ">="):
                raise ValueError(f"{where}: target.op must be '<=' or '>=', not {op!r}")
            if on not in ("ratio", "value"):
                raise ValueError(f"{where}: target.on must be 'ratio' or 'value', not {on!r}")
            target = Target(
                op, _number(t, "bound", f"{where}: target"), on, str(t.get("source", "ours"))
            )
        samples = d.get("samples")
        if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool)):
            raise ValueError(f"{where}: samples must be an integer, not {samples!r}")
        return cls(
            name=name,
            value=_number(d, "value", where),
            unit=_field(d, "unit", str, where),
            baseline=baseline,
            target=target,
            samples=samples,
            cv=None if d.get("cv") is None else _number(d, "cv", where),
            note=str(d.get("note") or ""),
        )


@dataclass(frozen=True)
class Result:
    """Everything one benchmark script reports: its figures and the machine they were taken on."""

    bench: str
    quick: bool
    figures: tuple[Figure, ...]
    seconds: float = 0.0
    machine: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "bench": self.bench,
            "quick": self.quick,
            "seconds": self.seconds,
            "figures": [f.to_json() for f in self.figures],
            "machine": dict(self.machine),
        }

    @classmethod
    def from_json(cls, data: object) -> Result:
        """Parse a script's JSON line (already decoded), raising ValueError on a bad shape."""
        d = _mapping(data, "result")
        if d.get("schema") != SCHEMA:
            raise ValueError(f"result: schema must be {SCHEMA}, not {d.get('schema')!r}")
        figures = d.get("figures")
        if not isinstance(figures, list):
            raise ValueError("result: figures must be a list")
        quick = d.get("quick")
        if not isinstance(quick, bool):
            raise ValueError(f"result: quick must be true or false, not {quick!r}")
        machine = d.get("machine", {})
        if not isinstance(machine, dict):
            raise ValueError("result: machine must be an object")
        return cls(
            bench=_field(d, "bench", str, "result"),
            quick=quick,
            figures=tuple(Figure.from_json(f) for f in figures),
            seconds=_number(d, "seconds", "result") if "seconds" in d else 0.0,
            machine=machine,
        )


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _field(d: Mapping[str, Any], key: str, kind: type[T], where: str) -> T:
    value = d.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{where}: {key} must be a {kind.__name__}, not {value!r}")
    return value


def _number(d: Mapping[str, Any], key: str, where: str) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key} must be a number, not {value!r}")
    return float(value)
