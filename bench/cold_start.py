"""Bench: fresh `phlo-tui` processes on a year of history: `run`, `diff`, `status` and `metrics`, each timed
from spawn to exit, with the import time each one pays (`python -X importtime`).

    uv run python bench/cold_start.py [--days 365] [--repeats 3] [--home DIR] [--before DIR] [--postgres private]

The home is built once by a `backfill` process (or reused with `--home DIR`, built there when empty) from
the Nightscout simulator, which serves over loopback from this process. Every `run` is one simulated hour
after the one before (PHLO_NOW), so each fetches, validates, merges, builds the layers, gates and promotes
one new hour, as an hourly cron job would; `diff`, `status` and `metrics` follow it at the same data time.
With `--before DIR` (a checkout of another commit, e.g. `git archive 0be4ab1 | tar -x -C DIR`) that tree's
command line runs too, alternating with this one on the same home (the order rotates per repeat), so both
see the same machine load; `python -m phlo_tui.cli` runs from the tree's root, so the tree's own `phlo_tui`
and `engine` are imported (the venv's packages are shared). The figures to compare are the ratios between
the trees of one run: the machine is shared and its load moves.

`--postgres private` publishes to the home's private PostgreSQL (PHLO_HOME/postgres; as root under
/var/lib/phlo-tui), created by the build; it lives only as long as the process that started it, so every
`run` starts it again (engine.publish.pgcluster), as a cron job's run does; the default publishes nothing
(PHLO_MANAGE_POSTGRES=false). After those, each round runs once more without promoting (PHLO_AUTO_PROMOTE=false,
one more hour) and times `diff` with dev ahead of main ("diff ahead": the rows of each table ahead are
compared in its data files). Every process may cache bytecode, as a person's Python does: the environment's
PYTHONDONTWRITEBYTECODE is dropped (with it every process compiled every module it imports from source,
seconds per command), and the trees' own modules are compiled before the first timing. Prints a table,
then one JSON line (the last); asserts nothing about time. Targets: `run` <= 4 s, `diff` <= 2 s (both
kinds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import HOUR_S, SEED, TIMEZONE, SimulatorClock, print_table
from engine.clock import NOW_ENV
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("run",), ("diff",), ("status",), ("metrics", "--days", "14"))
AHEAD = ("diff", "ahead")
"""`diff` after a run that did not promote: dev ahead of main."""
TARGETS = {"run": 4.0, "diff": 2.0, "diff_ahead": 2.0}
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")


def command_env(home: Path, url: str, postgres: str, now: float) -> dict[str, str]:
    # A person's Python caches modules' bytecode: without that every process compiles what it imports.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHLO_", "NIGHTSCOUT_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {
        **env,
        "PHLO_HOME": str(home),
        "PHLO_CONFIG": str(home.parent / "no-config.toml"),
        "PHLO_TIMEZONE": TIMEZONE,
        "PHLO_MANAGE_POSTGRES": "true" if postgres == "private" else "false",
        "NIGHTSCOUT_URL": url,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: datetime.fromtimestamp(now, UTC).isoformat(),
    }


def import_seconds(log: str) -> tuple[float, list[tuple[float, str]]]:
    """Seconds spent importing in a `-X importtime` log (the sum of its top-level modules' cumulative
    times), and its five slowest top-level modules."""
    top: list[tuple[float, str]] = []
    for line in log.splitlines():
        found = IMPORT_LINE.match(line)
        if found and not found.group(2).strip(" ") and len(found.group(2)) == 1:
            top.append((int(found.group(1)) / 1e6, found.group(3)))
    return sum(s for s, _ in top), sorted(top, reverse=True)[:5]


def timed(tree: Path, command: tuple[str, ...], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds from spawn to exit, seconds importing, the slowest imports) of one fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "phlo_tui.cli",
            *(command[:1] if command == AHEAD else command),
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
        raise SystemExit(f"{tree}: phlo-tui {' '.join(command)} exited {done.returncode}:\n{tail[-1500:]}")
    imports, slowest = import_seconds(done.stderr)
    return elapsed, imports, ", ".join(f"{name} {s:.2f}" for s, name in slowest)


def build(home: Path, url: str, postgres: str, clock: SimulatorClock, days: int) -> None:
    since = datetime.fromtimestamp(clock(), ZoneInfo(TIMEZONE)).date() - timedelta(days=days)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", "backfill", "--since", since.isoformat()],
        cwd=ROOT,
        env=command_env(home, url, postgres, clock()),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the backfill failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    print(f"built {days} days in {time.perf_counter() - started:.0f} s: {done.stdout.strip()}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="days of history when the home is built")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds; each runs every command once per tree"
    )
    parser.add_argument("--home", type=Path, help="a home to reuse (built there when it has no runs yet)")
    parser.add_argument("--before", type=Path, help="another source tree to run alternately, as 'before'")
    parser.add_argument(
        "--postgres",
        choices=("none", "private"),
        default="none",
        help="publish to nothing, or to the home's private PostgreSQL (each run starts it)",
    )
    args = parser.parse_args()
    trees = {"after": ROOT}
    if args.before is not None:
        trees = {"before": args.before.resolve(), **trees}
    for tree in trees.values():
        packages = [str(tree / p) for p in ("engine", "phlo_tui", "schemas")]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)
    with tempfile.TemporaryDirectory(prefix="phlo-bench-cold-") as tmp:
        home = (args.home or Path(tmp) / "home").resolve()
        # Data time goes on where the last bench on this home left it: each run finds one new hour.
        marker = home.parent / f"{home.name}.bench-now"
        start = float(marker.read_text()) if marker.exists() else time.time()
        clock = SimulatorClock(start=start, behind_s=0.0)
        with SimulatorServer(GlucoseSimulator(seed=SEED, tz=TIMEZONE, clock=clock)) as server:
            if not (home / "runs.sqlite").exists():
                build(home, server.url, args.postgres, clock, args.days)
            figures = {(name, c): [] for name in trees for c in (*COMMANDS, AHEAD)}
            try:
                for repeat in range(args.repeats):
                    names = list(trees)
                    names = names[repeat % len(names) :] + names[: repeat % len(names)]
                    for name in names:
                        clock.advance(HOUR_S)
                        marker.write_text(str(clock()))
                        env = command_env(home, server.url, args.postgres, clock())
                        for command in COMMANDS:
                            figures[name, command].append(timed(trees[name], command, env))
                            wall, imports, slowest = figures[name, command][-1]
                            print(
                                f"{name} {' '.join(command)}: {wall:.2f} s, imports {imports:.2f} s ({slowest})",
                                flush=True,
                            )
                        clock.advance(HOUR_S)
                        marker.write_text(str(clock()))
                        env = {
                            **command_env(home, server.url, args.postgres, clock()),
                            "PHLO_AUTO_PROMOTE": "false",
                        }
                        timed(trees[name], ("run",), env)
                        figures[name, AHEAD].append(timed(trees[name], AHEAD, env))
                        wall, imports, slowest = figures[name, AHEAD][-1]
                        print(
                            f"{name} diff, dev ahead: {wall:.2f} s, imports {imports:.2f} s ({slowest})",
                            flush=True,
                        )
            finally:
                if args.home is None and args.postgres == "private":
                    # As root the cluster's data lives outside the temporary home (/var/lib/phlo-tui).
                    subprocess.run(
                        [sys.executable, "-m", "phlo_tui.cli", "remove-postgres", "--yes"],
                        cwd=ROOT,
                        env=command_env(home, server.url, args.postgres, clock()),
                        capture_output=True,
                    )
    report(trees, figures, args.repeats)
    return 0


def report(
    trees: dict[str, Path],
    figures: dict[tuple[str, tuple[str, ...]], list[tuple[float, float, str]]],
    repeats: int,
) -> None:
    def med(name: str, command: tuple[str, ...], i: int) -> float:
        return statistics.median(f[i] for f in figures[name, command])

    header = ["command", *(f"{n} wall" for n in trees), *(f"{n} imports" for n in trees)]
    if "before" in trees:
        header.append("before/after wall")
    header.append("target")
    rows = []
    out: dict[str, dict[str, float]] = {name: {} for name in trees}
    for command in (*COMMANDS, AHEAD):
        key = "_".join(command) if command == AHEAD else command[0]
        for name in trees:
            out[name][f"{key}_s"] = round(med(name, command, 0), 3)
            out[name][f"{key}_imports_s"] = round(med(name, command, 1), 3)
        row = [" ".join(command)]
        row += [f"{out[n][f'{key}_s']:.2f} s" for n in trees]
        row += [f"{out[n][f'{key}_imports_s']:.2f} s" for n in trees]
        if "before" in trees:
            row.append(f"{out['before'][f'{key}_s'] / out['after'][f'{key}_s']:.2f}")
        row.append(f"<= {TARGETS[key]:g} s" if key in TARGETS else "")
        rows.append(row)
    print(f"\nfresh `phlo-tui COMMAND` processes, median of {repeats} round(s), trees alternating")
    print_table(header, rows)
    print(json.dumps({"bench": "cold_start", "repeats": repeats, **out}))


if __name__ == "__main__":
    sys.exit(main())
