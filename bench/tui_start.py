"""Bench: `phlo-tui --demo` started as a person starts it, in a real terminal (tmux), on a home with history.

- first paint: from starting the process until the terminal shows the dashboard's frame (the page tabs
  and the footer's keys), before any data;
- filled overview: until it shows glucose figures (the overview's mean or GMI, as bench/run.py reads them).

Both from the tmux command that starts the process, polling `tmux capture-pane` every 20 ms; then `q`,
and the next start waits for the process to end (its writer lease). With `--before DIR` (a checkout of
another commit, e.g. `git archive main | tar -x -C DIR`) that tree's dashboard is started too, alternating
with this one on the same home, so both see the same machine load. `python -m phlo_tui.cli` runs from the
tree's root, so the tree's own `phlo_tui` and `engine` are imported (the venv's packages are shared).
Prints figures and targets (< 1 s, < 2 s); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tui import build_year, demo_settings

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"first_paint_s": 1.0, "filled_overview_s": 2.0}
SIZE = (120, 40)
FRAME = re.compile(r"Overview.*\n(?:.*\n)*.*\bQuit\b")
"""The page tabs above and the footer's quit key below: the frame is on screen."""
FIGURES = re.compile(r"GMI\s*\d+(\.\d+)?\s*%|mean\s+\d+(\.\d+)?\s*(mg/dL|mmol/L)")
"""What bench/run.py's tui_first_paint waits for: the Overview's figures."""
POLL_S = 0.02
TIMEOUT_S = 120.0


def start_once(tree: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the frame, seconds to the figures) of one start of `tree`'s dashboard; nan if never."""
    socket = f"phlo-bench-start-{os.getpid()}-{time.monotonic_ns()}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    app = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "phlo_tui.cli"])
    command = f'cd {shlex.quote(str(tree))} && {app} --demo; echo "phlo-tui exited with status $?"; sleep 60'
    width, height = SIZE
    frame = filled = math.nan
    started = time.perf_counter()
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), command],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "TMUX"},
    )
    screen = ""
    try:
        while time.perf_counter() - started < TIMEOUT_S and "phlo-tui exited" not in screen:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "tui"], capture_output=True, text=True
            ).stdout
            now = time.perf_counter() - started
            if math.isnan(frame) and FRAME.search(screen):
                frame = now
            if FIGURES.search(screen):
                filled = now
                break
            time.sleep(POLL_S)
        else:
            print(f"no glucose figures after {time.perf_counter() - started:.0f} s; the screen:\n{screen}")
        # Quit as a person would and wait for the process to end: the next start needs the lease free.
        subprocess.run([*tmux, "send-keys", "-t", "tui", "q"], capture_output=True)
        deadline = time.perf_counter() + 60
        while "phlo-tui exited" not in screen and time.perf_counter() < deadline:
            time.sleep(0.1)
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "tui"], capture_output=True, text=True
            ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        (Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / socket).unlink(missing_ok=True)
    return frame, filled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="days of history on the home")
    parser.add_argument("--repeats", type=int, default=3, help="starts of each tree")
    parser.add_argument("--before", type=Path, help="another source tree to start alternately, as 'before'")
    args = parser.parse_args()
    trees = {"after": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    with tempfile.TemporaryDirectory(prefix="phlo-bench-tui-start-") as tmp:
        home = Path(tmp) / "year"
        build_year(demo_settings(home), args.days)
        env = {k: v for k, v in os.environ.items() if k.startswith(("PHLO_", "RUNTIME__"))}
        starts: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                starts[name].append(start_once(tree, env))
    print(f"`phlo-tui --demo` in tmux on {args.days} days, median of {args.repeats} starts, alternating")
    print(f"{'tree':<8} {'first paint':>12} {'filled overview':>16}   starts (paint/filled s)")
    figures = {}
    for name, runs in starts.items():
        paint = statistics.median(r[0] for r in runs)
        filled = statistics.median(r[1] for r in runs)
        figures[name] = {"first_paint_s": paint, "filled_overview_s": filled}
        each = ", ".join(f"{p:.2f}/{f:.2f}" for p, f in runs)
        print(f"{name:<8} {paint:>11.2f}s {filled:>15.2f}s   {each}")
    print(f"{'target':<8} {TARGETS['first_paint_s']:>11.1f}s {TARGETS['filled_overview_s']:>15.1f}s")
    print(json.dumps({"bench": "tui_start", "days": args.days, "repeats": args.repeats, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
