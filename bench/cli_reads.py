"""Bench: the read-only commands (`status`, `quality`, `metrics`, `diff`, `sql`) as a script calls them, on a
home with history: seconds from starting `python -m phlo_tui.cli --demo ...` to its exit, output discarded.

With `--before DIR` (a checkout of another commit, e.g. `git archive main | tar -x -C DIR`) that tree's
command line runs too, alternating with this one on the same home, so both see the same machine load;
`python -m phlo_tui.cli` runs from the tree's root, so the tree's own `phlo_tui` and `engine` are imported.
Prints medians; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table
from bench.tui import build_year, demo_settings

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (
    ("status",),
    ("status", "--json"),
    ("quality",),
    ("metrics", "--days", "14"),
    ("diff",),
    ("sql", "select 1"),
)


def seconds(tree: Path, command: tuple[str, ...], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", "--demo", *command],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{tree}: phlo-tui {' '.join(command)} failed: {result.stderr[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90, help="days of history on the home")
    parser.add_argument("--repeats", type=int, default=5, help="calls of each command per tree")
    parser.add_argument("--before", type=Path, help="another source tree to run alternately, as 'before'")
    args = parser.parse_args()
    trees = {"after": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="phlo-bench-cli-") as tmp:
        build_year(demo_settings(Path(tmp) / "home"), args.days)
        env = dict(os.environ)
        times = {(name, c): [] for name in trees for c in COMMANDS}
        for command in COMMANDS:
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    times[name, command].append(seconds(tree, command, env))
    print(f"`phlo-tui --demo COMMAND` on {args.days} days, median of {args.repeats} calls, alternating")
    figures = {name: {" ".join(c): statistics.median(times[name, c]) for c in COMMANDS} for name in trees}
    print_table(
        ["command", *trees],
        [[" ".join(c), *(f"{figures[name][' '.join(c)]:.2f}s" for name in trees)] for c in COMMANDS],
    )
    print(json.dumps({"bench": "cli_reads", "days": args.days, "repeats": args.repeats, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
