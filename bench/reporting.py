"""Turning outcomes into what people read: the terminal table, the README block, latest.json.

The last step of ``python -m bench``: pure functions from ``bench.running.Outcome``s (and the
run's facts: command, date, commit) to text and JSON data. Writing the files is
``bench.__main__``'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.figures import SCHEMA, Figure
from bench.running import Outcome

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"
COLUMNS = ("bench", "figure", "value", "baseline", "ratio", "target", "met")
NOISY_CV = 0.10  # calibration loop varying more than this: treat every ratio with care


def number(x: float) -> str:
    """About three significant digits, never in exponent form for everyday magnitudes."""
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 0.001:
        return f"{x:.3g}"
    return f"{x:.2e}"


def quantity(x: float, unit: str) -> str:
    return f"{number(x)} {unit}".rstrip()


def ratio_text(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if abs(r) < 10 else f"{r:.1f}x"


def met_text(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


def figure_cells(bench: str, f: Figure) -> tuple[str, ...]:
    baseline = (
        "-" if f.baseline is None else f"{quantity(f.baseline.value, f.unit)} ({f.baseline.name})"
    )
    target = "-" if f.target is None else f"{f.target.text(f.unit)} ({f.target.source})"
    return (
        bench,
        f.name,
        quantity(f.value, f.unit),
        baseline,
        ratio_text(f.ratio),
        target,
        met_text(f.met),
    )


def rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    """One row per figure; one FAILED row per script that failed."""
    out: list[tuple[str, ...]] = []
    for o in outcomes:
        if o.result is None:
            out.append((o.name, f"FAILED: {o.error}", "", "", "", "", ""))
            continue
        if not o.result.figures:
            out.append((o.name, "(no figures)", "", "", "", "", ""))
        out.extend(figure_cells(o.name, f) for f in o.result.figures)
    return out


def noise_line(o: Outcome) -> str:
    """One line on how noisy the machine was while ``o`` ran."""
    if o.result is None:
        return f"{o.name}: {o.status} after {o.seconds:.1f} s"
    m = o.result.machine
    parts = [f"{o.name}: {o.result.seconds:.1f} s"]
    before, after = m.get("loadavg_before") or [], m.get("loadavg_after") or []
    if before and after:
        parts.append(f"load {before[0]:.2f} -> {after[0]:.2f} on {m.get('cpus_usable', '?')} CPUs")
    cal = m.get("calibration") or {}
    if cal:
        parts.append(
            f"calibration cv {100 * cal['cv']:.1f}% "
            f"({cal['median_ms_before']:.2f} -> {cal['median_ms_after']:.2f} ms)"
        )
    if "steal_pct" in m:
        parts.append(f"steal {m['steal_pct']:.1f}%")
    if is_noisy(m):
        parts.append("NOISY: read ratios with care")
    return "; ".join(parts)


def is_noisy(machine: Mapping[str, Any]) -> bool:
    """Whether the calibration loop or the load average says the figures are shaky."""
    cal = machine.get("calibration") or {}
    load = machine.get("loadavg_before") or []
    cpus = machine.get("cpus_usable") or 1
    return bool(cal.get("cv", 0) > NOISY_CV or (load and load[0] > cpus))


def render_table(outcomes: Sequence[Outcome]) -> str:
    """The aligned plain-text table, then noise per script, then the stderr of each failure."""
    table = [COLUMNS, *rows(outcomes)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = []
    for n, r in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(noise_line(o) for o in outcomes)
    for o in outcomes:
        if not o.ok:
            lines.append("")
            lines.append(f"{o.name} FAILED: {o.error}")
            lines.extend(f"  | {line}" for line in (o.stderr_tail or "(no stderr)").splitlines())
    return "\n".join(lines)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|") or " "


def markdown(
    outcomes: Sequence[Outcome],
    *,
    command: str,
    when: str,
    commit: str | None,
    dirty: bool,
    quick: bool,
) -> str:
    """The README block: how and when the figures were made, then the table, then a legend."""
    version = "no commit" if commit is None else f"commit `{commit[:12]}`"
    if commit is not None and dirty:
        version += " with uncommitted changes"
    head = f"Measured with `{command}` on {when}, {version}"
    if quick:
        head += (
            ". **Quick run**: fewer samples, indicative only; `make bench` gives the figures"
            " to quote"
        )
    lines = [head + ".", ""]
    machines = [o.result.machine for o in outcomes if o.result is not None]
    if machines:
        m = machines[0]
        lines.append(
            f"Machine: {m.get('cpus_usable', '?')} CPUs ({m.get('cpu_model', '?')}), "
            f"Python {m.get('python', '?')}; noise per script: "
            + "; ".join(noise_line(o) for o in outcomes)
            + "."
        )
        lines.append("")
    lines.append("| " + " | ".join(COLUMNS[1:]) + " |")
    lines.append("|" + "---|" * (len(COLUMNS) - 1))
    for r in rows(outcomes):
        name = f"{r[0]}: {r[1]}"
        lines.append("| " + " | ".join(_md(c) for c in (name, *r[2:])) + " |")
    lines.append("")
    lines.append(
        "Ratios are value / baseline, both measured in the same run. Targets marked (ours) are "
        "our own, informative; others cite DESIGN.md §6."
    )
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the bench markers replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"expected exactly one {START} and one {END}")
    begin, end = text.index(START) + len(START), text.index(END)
    if end < begin:
        raise ValueError(f"{END} comes before {START}")
    return text[:begin] + "\n" + block.strip("\n") + "\n" + text[end:]


def document(
    outcomes: Sequence[Outcome],
    *,
    started: str,
    finished: str,
    command: str,
    quick: bool,
    commit: str | None,
    dirty: bool,
    machine: Mapping[str, Any],
) -> dict[str, Any]:
    """The content of ``bench/results/latest.json``."""
    return {
        "schema": SCHEMA,
        "started": started,
        "finished": finished,
        "command": command,
        "quick": quick,
        "commit": commit,
        "dirty": dirty,
        "machine": dict(machine),
        "ok": all(o.ok for o in outcomes),
        "results": [
            {
                "bench": o.name,
                "status": o.status,
                "seconds": o.seconds,
                "error": o.error or None,
                "stderr_tail": o.stderr_tail,
                "figures": [] if o.result is None else [f.to_json() for f in o.result.figures],
                "measure_seconds": None if o.result is None else o.result.seconds,
                "machine": None if o.result is None else dict(o.result.machine),
            }
            for o in outcomes
        ],
    }
