"""Bench: `phlo-tui report` as a person runs it, a fresh process each time, on a home with a year of history:
seconds from starting `python -m phlo_tui.cli --demo report --days N --out FILE --force` to its exit, for the
last 14 and the last 90 full days (PDF, and the 14 days as PNG). Prints medians; asserts nothing about time.

`fresh_report_seconds(env, days, repeats)` is what bench/run.py calls on its own year (`report_14d_s`).
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


def report_seconds(env: dict[str, str], days: int, out: Path, *, demo: bool = False) -> float:
    """One `phlo-tui report --days N` process, from spawn to exit (its CPU seconds go to CPU_SECONDS)."""
    command = [sys.executable, "-m", "phlo_tui.cli", *(["--demo"] if demo else [])]
    command += ["report", "--days", str(days), "--out", str(out), "--force"]
    # A person's Python caches modules' bytecode; a shell with PYTHONDONTWRITEBYTECODE would compile
    # matplotlib and fontTools from source in every process (seconds).
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - started
    CPU_SECONDS.append(_children_cpu() - cpu)
    if result.returncode != 0:
        raise SystemExit(f"phlo-tui report --days {days} failed: {result.stderr[-500:]}")
    return elapsed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_report_seconds(env: dict[str, str], days: int, repeats: int, *, demo: bool = False) -> float:
    """Median seconds of `repeats` fresh report processes on the home of `env` (after one untimed, which
    builds matplotlib's font cache on a machine that never ran it)."""
    with tempfile.TemporaryDirectory(prefix="phlo-bench-report-") as tmp:
        out = Path(tmp) / "agp.pdf"
        report_seconds(env, days, out, demo=demo)
        return statistics.median(report_seconds(env, days, out, demo=demo) for _ in range(repeats))


def main() -> int:
    from bench.tui import build_year, demo_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="days of history on the home")
    parser.add_argument("--repeats", type=int, default=5, help="report processes per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phlo-bench-report-") as tmp:
        build_year(demo_settings(Path(tmp) / "home"), args.days)
        env = dict(os.environ)
        times: dict[str, list[float]] = {key: [] for key, _, _ in CASES}
        cpu: dict[str, list[float]] = {key: [] for key, _, _ in CASES}
        for _, days, suffix in CASES:  # untimed: matplotlib's font cache, the OS's file cache
            report_seconds(env, days, Path(tmp) / f"warm.{suffix}", demo=True)
        for _ in range(args.repeats):  # the cases alternate, so that all see the same machine load
            for key, days, suffix in CASES:
                times[key].append(report_seconds(env, days, Path(tmp) / f"agp.{suffix}", demo=True))
                cpu[key].append(CPU_SECONDS[-1])
        figures = {key: round(statistics.median(values), 3) for key, values in times.items()}
        figures |= {f"{key[:-2]}_cpu_s": round(statistics.median(values), 3) for key, values in cpu.items()}
        load = os.getloadavg()[0]
    print(
        f"`phlo-tui --demo report` on {args.days} days of history, median of {args.repeats} fresh processes "
        f"(load average {load:.1f} on {os.cpu_count()} CPUs at the end)"
    )
    rows = [("last 14 days, PDF", "report_14d", "≤ 3 s"), ("last 90 days, PDF", "report_90d", "≤ 5 s")]
    rows.append(("last 14 days, PNG", "report_14d_png", ""))
    print_table(
        ["report", "wall s", "CPU s", "target"],
        [
            [name, f"{figures[key + '_s']:.2f}", f"{figures[key + '_cpu_s']:.2f}", target]
            for name, key, target in rows
        ],
    )
    print(
        json.dumps({"bench": "report", "days": args.days, "repeats": args.repeats, "load": load, **figures})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
