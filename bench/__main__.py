"""``python -m bench``: run every benchmark script, print the table, write the results.

The flow: ``bench.running.discover`` the scripts in bench/, run each in turn as a child process
with a time limit (``--quick``: 60 s each, full: 15 min each), print the table
(``bench.reporting``) on stdout and progress on stderr, write ``bench/results/latest.json``, and
rewrite the README's ``<!-- bench:start -->`` ... ``<!-- bench:end -->`` block.

The README block holds the figures to quote, so a plain full run (``make bench``) rewrites
README.md; a run with ``--quick`` or ``--only`` leaves it alone unless ``--readme PATH`` names a
file, and then the block says it was a quick run and which command made it.

Exit status: 0 when every script produced its figures (a missed target is a figure, not a
failure), 1 when any script failed or timed out, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import machine, reporting
from bench.running import Outcome, discover, run_script

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TIME_LIMIT = {True: 60.0, False: 15 * 60.0}  # seconds per script, by --quick


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmarks in bench/, print a table, write the results.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, < 30 s a script")
    parser.add_argument(
        "--only", nargs="+", action="extend", default=[], metavar="NAME", help="run these only"
    )
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCH_DIR / "results" / "latest.json",
        metavar="PATH",
        help="where to write the JSON results (default: bench/results/latest.json)",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        metavar="PATH",
        help="the file whose bench block to rewrite (default: README.md, on full runs only)",
    )
    parser.add_argument("--no-readme", action="store_true", help="leave every README alone")
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="time limit per script (60 / 900)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show scripts' stderr live")
    return parser.parse_args(argv)


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run's figures (output paths left out)."""
    words = ["python -m bench"]
    if args.quick:
        words.append("--quick")
    if args.only:
        words.append("--only " + " ".join(args.only))
    return " ".join(words)


def readme_target(args: argparse.Namespace) -> Path | None:
    if args.no_readme:
        return None
    if args.readme is not None:
        return Path(args.readme)
    return None if args.quick or args.only else ROOT / "README.md"


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = discover(BENCH_DIR)
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in args.only if n not in names]
    if unknown:
        print(f"python -m bench: no benchmark named {', '.join(unknown)}", file=sys.stderr)
        print(f"  the benchmarks are: {', '.join(names) or '(none)'}", file=sys.stderr)
        return 2
    selected = [n for n in names if not args.only or n in args.only]
    limit = args.timeout or TIME_LIMIT[args.quick]

    started, load_before = now(), machine.loadavg()
    outcomes: list[Outcome] = []
    for name in selected:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        outcome = run_script(
            BENCH_DIR / f"{name}.py",
            quick=args.quick,
            timeout=limit,
            cwd=ROOT,
            verbose=args.verbose,
        )
        outcomes.append(outcome)
        verdict = "ok" if outcome.ok else f"FAILED: {outcome.error}"
        print(f"bench: {name} {verdict} ({outcome.seconds:.1f} s)", file=sys.stderr, flush=True)
    finished = now()

    print(reporting.render_table(outcomes))
    command = command_line(args)
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    doc = reporting.document(
        outcomes,
        started=started.isoformat(),
        finished=finished.isoformat(),
        command=command,
        quick=args.quick,
        commit=commit,
        dirty=dirty,
        machine={
            **machine.static(),
            "loadavg_before": load_before,
            "loadavg_after": machine.loadavg(),
        },
    )
    write_atomically(args.results, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    print(f"\nresults: {args.results}", file=sys.stderr)

    readme = readme_target(args)
    if readme is not None:
        block = reporting.markdown(
            outcomes,
            command=command,
            when=started.strftime("%Y-%m-%d %H:%M UTC"),
            commit=commit,
            dirty=dirty,
            quick=args.quick,
        )
        try:
            text = readme.read_text(encoding="utf-8")
            write_atomically(readme, reporting.replace_block(text, block))
        except (OSError, ValueError) as exc:
            print(f"bench: README block not updated: {readme}: {exc}", file=sys.stderr)
        else:
            print(f"README block: {readme}", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
