"""How fast the local loop is: ``shoal validate`` and ``shoal --version`` against a bare Python.

Child processes, interleaved round by round (``bench.timing.time_commands``), from the repo root:

- ``shoal validate -q -f examples/shop/shoal.yaml``: median and p95 wall time, against a bare
  ``python3 -c pass`` (the floor any Python CLI pays) and against a ``python3`` that only imports
  PyYAML and parses the same file (what reading a YAML manifest costs at the least);
- ``shoal --version``: interpreter start plus shoal's import cost, against ``python3 -c pass``.

In process (``bench.timing.time_calls``): ``shoal.manifest.load_manifest`` of the same file per
call, against ``yaml.safe_load`` of its text (PyYAML's default, pure-Python loader) and against
the libyaml ``CSafeLoader`` that shoal's reader itself uses, when installed.

The child Python is this one (``sys.executable``, the venv's), and ``shoal`` is the venv's console
script, as a developer runs it. Every target here is our own and informative: DESIGN.md §6 sets
none for the CLI. A ratio to a bare ``python3`` is reported but not targeted: validating means
importing pydantic and building the schema (~0.25 s of the time, measured with -X importtime);
the targets are absolute instead: validate under 1 s, ``--version`` under 250 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repo root, not bench/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from collections.abc import Callable, Iterator

import yaml

from bench.figures import Figure, at_most
from bench.harness import Run, from_samples, main
from bench.timing import python_env, time_calls, time_commands
from shoal.manifest import load_manifest

MANIFEST = "examples/shop/shoal.yaml"


def shoal_command() -> list[str]:
    """The venv's ``shoal`` console script, or ``python -m shoal`` where there is none."""
    script = Path(sys.executable).with_name("shoal")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "shoal"]


def measure(run: Run) -> Iterator[Figure]:
    """shoal validate / --version vs a bare python3, and load_manifest vs yaml.safe_load."""
    py, shoal = sys.executable, shoal_command()
    commands = {
        "pass": [py, "-c", "pass"],
        "yaml": [py, "-c", f"import yaml; yaml.safe_load(open({MANIFEST!r}))"],
        "validate": [*shoal, "validate", "-q", "-f", MANIFEST],
        "version": [*shoal, "--version"],
    }
    rounds = run.pick(quick=10, full=40)
    print(f"cli: up to {rounds} rounds of {', '.join(commands)}", file=sys.stderr)
    t = time_commands(
        commands,
        rounds=rounds,
        warmup=run.pick(quick=1, full=3),
        budget=run.pick(quick=15.0, full=600.0),
        cwd=run.root,
        env=python_env(),
    )
    bare = "python3 -c pass"
    validate = "shoal validate -q -f " + MANIFEST
    print(f"cli: {len(t['pass'])} rounds taken", file=sys.stderr)
    yield from_samples(
        "validate, median",
        t["validate"],
        baseline=(bare, t["pass"]),
        target=at_most(1000, on="value"),
        note=f"`{validate}` as a child process, wall time; target: feels instant (< 1 s)",
    )
    yield from_samples(
        "validate, p95",
        t["validate"],
        stat="p95",
        baseline=(bare, t["pass"]),
        note="nearest-rank p95 of both",
    )
    yield from_samples(
        "validate vs parsing alone, median",
        t["validate"],
        baseline=("python3 + import yaml + safe_load", t["yaml"]),
        note="what shoal adds to the least a YAML-reading Python CLI pays",
    )
    yield from_samples(
        "shoal --version, median",
        t["version"],
        baseline=(bare, t["pass"]),
        target=at_most(250, on="value"),
        note="interpreter start + shoal's import cost (commands are imported lazily)",
    )

    path = run.root / MANIFEST
    text = path.read_text(encoding="utf-8")
    calls: dict[str, Callable[[], object]] = {
        "load_manifest": lambda: load_manifest(path, cwd=run.root),
        "safe_load": lambda: yaml.safe_load(text),
    }
    c_loader = getattr(yaml, "CSafeLoader", None)
    if c_loader is not None:
        calls["c_safe_load"] = lambda: yaml.load(text, Loader=c_loader)
    repeat = run.pick(quick=15, full=60)
    print(f"cli: {repeat} samples of {', '.join(calls)} in process", file=sys.stderr)
    c = time_calls(calls, repeat=repeat)
    yield from_samples(
        "load_manifest() per call, median",
        c["load_manifest"],
        baseline=("yaml.safe_load", c["safe_load"]),
        target=at_most(2),
        note="read + parse with positions + interpolate + validate + check, in process",
    )
    if c_loader is not None:
        yield from_samples(
            "load_manifest() vs libyaml parse, median",
            c["load_manifest"],
            baseline=("yaml.load(CSafeLoader)", c["c_safe_load"]),
            note="the fastest parse PyYAML offers: shoal's own parse floor",
        )


if __name__ == "__main__":
    sys.exit(main("cli", measure))
