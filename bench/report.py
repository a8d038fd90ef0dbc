"""Bench: `phlo-tui report` as a person runs it, a fresh process each time, on a home with a year of history:
seconds from starting `python -m phlo_tui.cli --demo report --days N --out FILE --force` to its exit, for the
last 14 and the last 90 full days (PDF, and the 14 days as PNG). Prints medians of wall and CPU seconds;
asserts nothing about time.

    uv run --extra bench python bench/report.py [--days 365] [--repeats 5] [--base DIR] [--home DIR]

`--base DIR` also times the source tree at DIR (say `git archive 0be4ab1 | tar -x -C DIR`) with this
interpreter on the same home, alternating with this tree, and prints the ratios base / ours of each case:
on a shared machine those are the comparable figures, not the seconds. `--home DIR` reports on a demo home
built before (by an earlier run, or `phlo-tui --demo backfill`) instead of building a year in a temporary one.

`fresh_report_seconds(env, days, repeats)` is what bench/run.py calls on its own history (`report_14d_s`,
`report_90d_s`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table

ROOT = Path(__file__).resolve().parents[1]
CPU_SECONDS: list[float] = []
"""User + system seconds of each report process measured, in order: on a loaded machine a steadier
figure than the wall clock (the process is single-threaded but for DuckDB)."""
CASES = (("report_14d_s", 14, "pdf"), ("report_90d_s", 90, "pdf"), ("report_14d_png_s", 14, "png"))


def report_seconds(
    env: dict[str, str], days: int, out: Path, *, demo: bool = False, tree: Path = ROOT
) -> float:
    """One `phlo-tui report --days N` process of the source tree `tree`, from spawn to exit (its CPU
    seconds go to CPU_SECONDS)."""
    command = [sys.executable, "-m", "phlo_tui.cli", *(["--demo"] if demo else [])]
    command += ["report", "--days", str(days), "--out", str(out), "--force"]
    # A person's Python caches modules' bytecode; a shell with PYTHONDONTWRITEBYTECODE would compile
    # matplotlib and fontTools from source in every process (seconds).
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - started
    CPU_SECONDS.append(_children_cpu() - cpu)
    if result.returncode != 0:
        raise SystemExit(f"phlo-tui report --days {days} failed: {result.stderr[-500:]}")
    return elapsed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_report_seconds(
    env: dict[str, str], days: int, repeats: int, *, demo: bool = False, warm: bool = True
) -> float:
    """Median seconds of `repeats` fresh report processes on the home of `env` (after one untimed with
    `warm`, which writes the bytecode and matplotlib's font cache on a machine that never ran it)."""
    with tempfile.TemporaryDirectory(prefix="phlo-bench-report-") as tmp:
        out = Path(tmp) / "agp.pdf"
        if warm:
            report_seconds(env, days, out, demo=demo)
        return statistics.median(report_seconds(env, days, out, demo=demo) for _ in range(repeats))


def main() -> int:
    from bench.tui import build_year, demo_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="days of history on the home")
    parser.add_argument("--repeats", type=int, default=5, help="report processes per case")
    parser.add_argument("--base", type=Path, help="another source tree to time against this one")
    parser.add_argument("--home", type=Path, help="an existing demo home to report on (nothing is built)")
    args = parser.parse_args()
    trees = {"ours": ROOT} | ({"base": args.base.resolve()} if args.base else {})
    with tempfile.TemporaryDirectory(prefix="phlo-bench-report-") as tmp:
        if args.home is not None:
            demo_settings(args.home.resolve())
        else:
            build_year(demo_settings(Path(tmp) / "home"), args.days)
        env = dict(os.environ)
        times = {(tree, key): [] for tree in trees for key, _, _ in CASES}
        cpu = {(tree, key): [] for tree in trees for key, _, _ in CASES}

        def once(tree: str, days: int, suffix: str) -> float:
            return report_seconds(env, days, Path(tmp) / f"agp.{suffix}", demo=True, tree=trees[tree])

        for tree in trees:  # untimed: bytecode, matplotlib's font cache, the OS's file cache
            for _, days, suffix in CASES:
                once(tree, days, suffix)
        # The trees and the cases alternate (the order of the trees turns each repeat), so that all see
        # the same machine load.
        for r in range(args.repeats):
            names = list(trees)[r % len(trees) :] + list(trees)[: r % len(trees)]
            for key, days, suffix in CASES:
                for tree in names:
                    times[tree, key].append(once(tree, days, suffix))
                    cpu[tree, key].append(CPU_SECONDS[-1])
        load = os.getloadavg()[0]
    wall = {k: statistics.median(v) for k, v in times.items()}
    used = {k: statistics.median(v) for k, v in cpu.items()}
    figures = {key: round(wall["ours", key], 3) for key, _, _ in CASES}
    figures |= {f"{key[:-2]}_cpu_s": round(used["ours", key], 3) for key, _, _ in CASES}
    print(
        f"`phlo-tui --demo report` on {args.days} days of history, median of {args.repeats} fresh processes "
        f"(load average {load:.1f} on {os.cpu_count()} CPUs at the end)"
    )
    names = {"report_14d_s": "last 14 days, PDF", "report_90d_s": "last 90 days, PDF"}
    names["report_14d_png_s"] = "last 14 days, PNG"
    targets = {"report_14d_s": "≤ 3 s", "report_90d_s": "≤ 5 s"}
    header = ["report", "wall s", "CPU s", "target"]
    if args.base:
        header += ["base wall s", "base CPU s", "wall base/ours", "CPU base/ours"]
    rows = []
    for key, _, _ in CASES:
        row = [names[key], f"{wall['ours', key]:.2f}", f"{used['ours', key]:.2f}", targets.get(key, "")]
        if args.base:
            row += [f"{wall['base', key]:.2f}", f"{used['base', key]:.2f}"]
            row += [
                f"{wall['base', key] / wall['ours', key]:.2f}",
                f"{used['base', key] / used['ours', key]:.2f}",
            ]
            figures[f"{key[:-2]}_ratio_wall"] = round(wall["base", key] / wall["ours", key], 3)
            figures[f"{key[:-2]}_ratio_cpu"] = round(used["base", key] / used["ours", key], 3)
        rows.append(row)
    print_table(header, rows)
    print(
        json.dumps({"bench": "report", "days": args.days, "repeats": args.repeats, "load": load, **figures})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
