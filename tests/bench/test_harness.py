"""The benchmark harness: its pure parts exhaustively, its process handling with tiny scripts,
and one real ``python -m bench --quick --only cli`` run into temporary files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

if str(Path(__file__).resolve().parents[2]) not in sys.path:  # plain `pytest`: find bench/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest
from bench.__main__ import ROOT, command_line, parse_args, readme_target
from bench.figures import SCHEMA, Baseline, Figure, Result, Target, at_least, at_most
from bench.harness import from_samples
from bench.reporting import (
    COLUMNS,
    document,
    is_noisy,
    markdown,
    number,
    render_table,
    replace_block,
)
from bench.running import Outcome, discover, is_benchmark, parse_output, run_script
from bench.stats import cv, median, percentile, summarize
from bench.timing import CommandFailed, time_calls, time_commands

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- stats


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0, 1), (10, 1), (10.1, 2), (50, 5), (90, 9), (95, 10), (99, 10), (100, 10)],
)
def test_percentile_is_nearest_rank(p: float, expected: float) -> None:
    assert percentile([7, 3, 1, 10, 2, 9, 4, 8, 6, 5], p) == expected


def test_percentile_of_twenty_samples() -> None:
    samples = [float(i) for i in range(1, 21)]
    assert percentile(samples, 95) == 19
    assert percentile(samples, 99) == 20
    assert percentile(samples, 50) == 10


def test_percentile_is_always_an_observed_value() -> None:
    samples = [1.0, 100.0]
    assert percentile(samples, 50) == 1.0
    assert percentile(samples, 51) == 100.0
    assert percentile([4.2], 99) == 4.2


@pytest.mark.parametrize("p", [-1, 100.5])
def test_percentile_rejects_p_outside_0_100(p: float) -> None:
    with pytest.raises(ValueError, match="outside 0-100"):
        percentile([1.0], p)


def test_empty_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="no samples"):
        median([])
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_median_interpolates_but_p50_does_not() -> None:
    assert median([1, 2, 3, 4]) == 2.5
    assert percentile([1, 2, 3, 4], 50) == 2
    assert median([3, 1, 2]) == 2


def test_cv() -> None:
    assert cv([5.0, 5.0, 5.0]) == 0.0
    assert cv([1.0]) == 0.0
    assert cv([0.0, 0.0]) == 0.0
    assert cv([1.0, 3.0]) == pytest.approx(2**0.5 / 2)


def test_summary_scales_to_another_unit() -> None:
    s = summarize([0.001, 0.002, 0.003]).scaled(1000)
    assert (s.n, s.min, s.median, s.max) == (3, 1.0, 2.0, 3.0)
    assert s.cv == pytest.approx(0.5)


# ---------------------------------------------------------------- figures


def test_ratio_target_and_met() -> None:
    f = Figure("x", 30.0, "ms", Baseline("b", 10.0), at_most(3))
    assert f.ratio == 3.0
    assert f.met is True
    assert Figure("x", 31.0, "ms", Baseline("b", 10.0), at_most(3)).met is False
    assert Figure("x", 31.0, "ms", Baseline("b", 10.0)).met is None
    assert Figure("x", 31.0, "ms").ratio is None
    assert Figure("x", 1.0, "ms", Baseline("b", 0.0), at_most(3)).met is None


def test_higher_is_better_and_value_targets() -> None:
    throughput = Figure("rps", 900.0, "req/s", Baseline("nginx", 1000.0), at_least(0.85))
    assert throughput.met is True
    assert throughput.target is not None and throughput.target.text() == ">= 0.85x"
    p99 = Figure("p99", 25.0, "ms", target=at_most(20, on="value", source="DESIGN.md §6"))
    assert p99.met is False
    assert p99.target is not None and p99.target.text("ms") == "<= 20 ms"


def test_figure_json_round_trip() -> None:
    f = Figure("x", 12.5, "ms", Baseline("b", 5.0), Target("<=", 3.0), 40, 0.05, "a note")
    data = f.to_json()
    assert data["ratio"] == 2.5
    assert data["met"] is True
    assert data["target"]["text"] == "<= 3x"
    assert data["target"]["source"] == "ours"
    assert Figure.from_json(json.loads(json.dumps(data))) == f


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected an object"),
        ({"value": 1, "unit": "ms"}, "name must be a str"),
        ({"name": "x", "value": "1", "unit": "ms"}, "value must be a number"),
        ({"name": "x", "value": True, "unit": "ms"}, "value must be a number"),
        ({"name": "x", "value": 1, "unit": "ms", "baseline": {"name": "b"}}, "baseline: value"),
        ({"name": "x", "value": 1, "unit": "ms", "target": {"op": "<", "bound": 1}}, "op"),
        ({"name": "x", "value": 1, "unit": "ms", "samples": 1.5}, "samples"),
    ],
)
def test_bad_figures_are_named(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Figure.from_json(data)


def test_from_samples_compares_the_same_statistic() -> None:
    f = from_samples(
        "p95", [0.010, 0.020, 0.030], stat="p95", baseline=("b", [0.001, 0.002, 0.004])
    )
    assert f.value == pytest.approx(30.0)
    assert (f.unit, f.samples) == ("ms", 3)
    assert f.baseline is not None and f.baseline.value == pytest.approx(4.0)
    with pytest.raises(ValueError, match="unknown statistic"):
        from_samples("x", [1.0], stat="p42")


def result_line(bench: str = "demo", quick: bool = True) -> str:
    figure = Figure("f", 2.0, "ms", Baseline("b", 1.0), at_most(3))
    return json.dumps(Result(bench, quick, (figure,), 1.0, {"cpus": 2}).to_json())


def test_parse_output_accepts_one_json_line() -> None:
    result = parse_output("demo", "\n" + result_line() + "\n", quick=True)
    assert result.bench == "demo" and result.figures[0].ratio == 2.0


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "exactly one JSON line, got 0"),
        ("hello\n" + result_line(), "exactly one JSON line, got 2"),
        ("{not json", "not JSON"),
        (json.dumps({"schema": SCHEMA + 1}), "schema"),
        (result_line(bench="other"), "reported itself as 'other'"),
        (result_line(quick=False), "quick"),
    ],
)
def test_parse_output_rejects(stdout: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_output("demo", stdout, quick=True)


# ---------------------------------------------------------------- discovery


def test_a_benchmark_is_a_module_with_a_main_block(tmp_path: Path) -> None:
    assert is_benchmark('import sys\nif __name__ == "__main__":\n    sys.exit(0)\n')
    assert is_benchmark("if '__main__' == __name__:\n    pass\n")
    assert not is_benchmark('"""A helper."""\ndef f() -> None:\n    pass\n')
    assert not is_benchmark('def f():\n    if __name__ == "__main__":\n        pass\n')
    (tmp_path / "zeta.py").write_text('if __name__ == "__main__":\n    pass\n')
    (tmp_path / "alpha.py").write_text('if __name__ == "__main__":\n    pass\n')
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "__main__.py").write_text('if __name__ == "__main__":\n    pass\n')
    (tmp_path / "_private.py").write_text('if __name__ == "__main__":\n    pass\n')
    assert discover(tmp_path) == ["alpha", "zeta"]


def test_the_repository_has_the_cli_benchmark_and_no_helper_is_taken_for_one() -> None:
    names = discover(REPO / "bench")
    assert "cli" in names
    assert not {"stats", "figures", "machine", "timing", "harness", "running", "reporting"} & set(
        names
    )


# ---------------------------------------------------------------- reporting


def ok(name: str, *shown: Figure) -> Outcome:
    machine = {
        "cpus_usable": 2,
        "cpu_model": "Test CPU",
        "python": "3.11.7 (CPython)",
        "loadavg_before": [0.5, 0.4, 0.3],
        "loadavg_after": [0.6, 0.4, 0.3],
        "steal_pct": 0.1,
        "calibration": {"cv": 0.02, "median_ms_before": 4.0, "median_ms_after": 4.1},
    }
    return Outcome(name, "ok", 3.0, Result(name, True, shown, 2.5, machine))


OUTCOMES = [
    ok(
        "cli",
        Figure("validate, median", 612.3, "ms", Baseline("python3 -c pass", 27.2), at_most(3)),
        Figure("load | pipe", 0.0123, "ms", Baseline("yaml", 0.0246)),
    ),
    Outcome("gateway", "timeout", 60.0, None, "timed out after 60 s", "line 1\nline 2"),
]


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0, "0"),
        (1234.5, "1,234"),
        (612.3, "612"),
        (27.25, "27.2"),
        (1.234, "1.23"),
        (0.0123, "0.0123"),
        (0.00001, "1.00e-05"),
    ],
)
def test_number_format(x: float, text: str) -> None:
    assert number(x) == text


def test_table_shows_every_figure_and_every_failure() -> None:
    table = render_table(OUTCOMES)
    lines = table.splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert set(lines[1]) <= {"-", " "}
    row = next(line for line in lines if "validate, median" in line)
    for cell in ("612 ms", "27.2 ms (python3 -c pass)", "22.5x", "<= 3x (ours)", "NO"):
        assert cell in row
    assert "0.50x" in table and row.index("612 ms") == lines[0].index("value")
    assert "gateway  FAILED: timed out after 60 s" in table
    assert "  | line 2" in table
    assert "cli: 2.5 s; load 0.50 -> 0.60 on 2 CPUs; calibration cv 2.0%" in table


def test_noisy_machine_is_flagged() -> None:
    quiet = {"calibration": {"cv": 0.02}, "loadavg_before": [0.5], "cpus_usable": 2}
    assert not is_noisy(quiet)
    assert is_noisy({**quiet, "calibration": {"cv": 0.2}})
    assert is_noisy({**quiet, "loadavg_before": [3.0]})


def test_markdown_block() -> None:
    block = markdown(
        OUTCOMES,
        command="python -m bench --quick",
        when="2025-01-02 03:04 UTC",
        commit="0123456789abcdef0123",
        dirty=True,
        quick=True,
    )
    assert block.startswith(
        "Measured with `python -m bench --quick` on 2025-01-02 03:04 UTC, "
        "commit `0123456789ab` with uncommitted changes. **Quick run**"
    )
    assert "| figure | value | baseline | ratio | target | met |" in block
    assert "| cli: validate, median | 612 ms | 27.2 ms (python3 -c pass) | 22.5x |" in block
    assert "cli: load \\| pipe" in block  # a pipe in a cell does not split it
    assert "| gateway: FAILED: timed out after 60 s |" in block
    full = markdown(
        OUTCOMES, command="python -m bench", when="w", commit=None, dirty=False, quick=False
    )
    assert "Quick run" not in full and "no commit" in full


README = "# x\n\nintro\n\n<!-- bench:start -->\nold\nlines\n<!-- bench:end -->\n\n## After\n"


def test_replace_block_keeps_everything_else() -> None:
    new = replace_block(README, "\nfresh\n\n")
    assert new == "# x\n\nintro\n\n<!-- bench:start -->\nfresh\n<!-- bench:end -->\n\n## After\n"
    assert replace_block(new, "fresh") == new


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers", "exactly one"),
        ("<!-- bench:start -->\n", "exactly one"),
        (README + README, "exactly one"),
        ("<!-- bench:end -->\n<!-- bench:start -->\n", "before"),
    ],
)
def test_replace_block_refuses_bad_markers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace_block(text, "x")


def test_results_document() -> None:
    doc = document(
        OUTCOMES,
        started="s",
        finished="f",
        command="c",
        quick=True,
        commit=None,
        dirty=False,
        machine={"cpus": 2},
    )
    assert doc["ok"] is False
    assert [r["status"] for r in doc["results"]] == ["ok", "timeout"]
    assert doc["results"][0]["figures"][0]["ratio"] == pytest.approx(612.3 / 27.2)
    assert doc["results"][1]["figures"] == [] and doc["results"][1]["error"]
    json.dumps(doc, allow_nan=False)


# ---------------------------------------------------------------- the command line


def test_command_line_leaves_output_paths_out() -> None:
    args = parse_args(["--quick", "--only", "cli", "gateway", "--results", "/tmp/r.json"])
    assert command_line(args) == "python -m bench --quick --only cli gateway"
    assert command_line(parse_args([])) == "python -m bench"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ROOT / "README.md"),
        (["--quick"], None),
        (["--only", "cli"], None),
        (["--quick", "--readme", "/tmp/R.md"], Path("/tmp/R.md")),
        (["--readme", "/tmp/R.md", "--no-readme"], None),
    ],
)
def test_only_a_full_run_of_everything_rewrites_the_readme_by_default(
    argv: list[str], expected: Path | None
) -> None:
    assert readme_target(parse_args(argv)) == expected


def test_unknown_benchmark_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope", "--no-readme"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "no benchmark named nope" in done.stderr and "cli" in done.stderr


# ---------------------------------------------------------------- running scripts


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_the_harness_keeps_stdout_to_one_json_line(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "demo",
        f"""
        import subprocess, sys
        sys.path.insert(0, {str(REPO)!r})
        from bench.figures import Baseline, Figure, at_most
        from bench.harness import main

        def measure(run):
            print("a stray print")
            subprocess.run(["echo", "a child's output"], check=True)
            yield Figure("f", 2.0, "ms", Baseline("b", 1.0), at_most(3))

        if __name__ == "__main__":
            sys.exit(main("demo", measure))
        """,
    )
    outcome = run_script(path, quick=True, timeout=30, cwd=tmp_path)
    assert outcome.ok, outcome
    assert outcome.result is not None
    assert outcome.result.figures[0].met is True
    assert outcome.result.machine["calibration"]["rounds"] == 20
    assert "a stray print" in outcome.stderr_tail and "a child's output" in outcome.stderr_tail


def test_a_script_that_raises_fails_with_its_traceback(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "boom",
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from bench.harness import main

        def measure(run):
            raise RuntimeError("no backend here")

        if __name__ == "__main__":
            sys.exit(main("boom", measure))
        """,
    )
    outcome = run_script(path, quick=True, timeout=30, cwd=tmp_path)
    assert (outcome.status, outcome.error) == ("failed", "exited with status 1")
    assert "RuntimeError: no backend here" in outcome.stderr_tail


def test_a_script_over_its_time_limit_is_stopped(tmp_path: Path) -> None:
    path = script(tmp_path, "slow", "import time\ntime.sleep(60)\n")
    outcome = run_script(path, quick=True, timeout=0.5, cwd=tmp_path)
    assert outcome.status == "timeout"
    assert outcome.seconds < 10


def test_processes_left_behind_are_stopped_and_fail_the_script(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    path = script(
        tmp_path,
        "leaky",
        f"""
        import subprocess, sys
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        open({str(marker)!r}, "w").write(str(child.pid))
        print("{{}}")
        """,
    )
    outcome = run_script(path, quick=True, timeout=30, cwd=tmp_path)
    assert outcome.status == "failed"
    assert "left processes running" in outcome.error
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_bad_output_fails(tmp_path: Path) -> None:
    path = script(tmp_path, "chatty", "print('hello')\nprint('world')\n")
    outcome = run_script(path, quick=True, timeout=30, cwd=tmp_path)
    assert outcome.status == "failed"
    assert outcome.error.startswith("bad output: stdout must be exactly one JSON line")


def test_time_commands_interleaves_and_keeps_to_its_budget() -> None:
    commands = {"a": ["true"], "b": [sys.executable, "-c", "pass"]}
    t = time_commands(commands, rounds=50, warmup=1, budget=0.0, min_rounds=3)
    assert {k: len(v) for k, v in t.items()} == {"a": 3, "b": 3}
    assert all(x > 0 for v in t.values() for x in v)
    with pytest.raises(CommandFailed, match="exited 3") as failed:
        time_commands({"bad": [sys.executable, "-c", "raise SystemExit(3)"]}, rounds=1)
    assert failed.value.returncode == 3


def test_time_calls_gives_seconds_per_call() -> None:
    t = time_calls(
        {"sum": lambda: sum(range(100)), "noop": lambda: None}, repeat=4, min_sample_seconds=0.001
    )
    assert {k: len(v) for k, v in t.items()} == {"sum": 4, "noop": 4}
    assert 0 < median(t["noop"]) < median(t["sum"]) < 0.01


# ---------------------------------------------------------------- one real run


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_python_m_bench_quick_only_cli(tmp_path: Path) -> None:
    results, readme = tmp_path / "out" / "latest.json", tmp_path / "README.md"
    readme.write_text(README)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--only", "cli"),
            *("--results", str(results), "--readme", str(readme)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validate, median" in done.stdout.splitlines()[2]

    doc = json.loads(results.read_text())
    assert doc["schema"] == SCHEMA and doc["quick"] is True and doc["ok"] is True
    assert doc["command"] == "python -m bench --quick --only cli"
    assert {"started", "finished", "commit", "dirty", "machine"} <= set(doc)
    [cli] = doc["results"]
    assert (cli["bench"], cli["status"], cli["error"]) == ("cli", "ok", None)
    assert cli["machine"]["cpus"] >= 1 and len(cli["machine"]["loadavg_before"]) == 3
    assert 0 <= cli["machine"]["calibration"]["cv"] < 5
    shown = {f["name"]: Figure.from_json(f) for f in cli["figures"]}
    validate = shown["validate, median"]
    assert validate.unit == "ms" and validate.samples is not None and 5 <= validate.samples <= 10
    assert validate.baseline is not None and validate.baseline.name == "python3 -c pass"
    assert validate.ratio is not None and validate.ratio > 1  # shoal cannot beat a bare python
    assert validate.target is not None and validate.target.source == "ours"
    assert {"validate, p95", "shoal --version, median", "load_manifest() per call, median"} <= set(
        shown
    )
    for f in cli["figures"]:
        assert f["value"] > 0 and f["ratio"] == pytest.approx(f["value"] / f["baseline"]["value"])

    text = readme.read_text()
    assert text.startswith("# x\n\nintro\n\n<!-- bench:start -->\nMeasured with `python -m bench")
    assert "**Quick run**" in text and "| cli: validate, median |" in text
    assert text.endswith("<!-- bench:end -->\n\n## After\n")
