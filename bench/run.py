"""Bench: the headline figures in one run, ours against the peers, on generated simulator data.

    uv run --extra bench python bench/run.py [--quick] [--days N] [--repeats N] [--hours N] [--start ISO]

One year of history with --quick, five years without. Everything runs in this process tree: the
simulator (over loopback HTTP) and a throwaway PostgreSQL in this process, the engine in a child
process of its own (so that its peak RSS is its own), dbt-duckdb, iglu-python and the httpx +
pyarrow baseline here, the `phlo-tui run` CLI and the dashboard as subprocesses. Peers are timed
in the same run, alternating with ours, and every figure is a median of repeats; ratios are peer
seconds over ours. Prints a table, then one JSON line (the last line). Asserts nothing about time:
the targets are printed beside the figures with ✓ or ✗.

The simulated clock starts at --start (default: now) and moves one hour per warm or CLI run; the
engine, the CLI and the dashboard take their data time from it (engine.clock, PHLO_NOW), so any
instant works, a signal loss or a sensor warm-up included: an hour with no new reading is a normal
hour. Any failure ends the bench at once with one line saying what failed and exit status 1; the
engine process is terminated, never waited for.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psutil
import pyarrow as pa

from engine.api.facade import Engine
from engine.clock import NOW_ENV, parse_instant
from engine.config import load_settings
from engine.errors import ConfigError
from engine.ingest.nightscout import (
    DAY_MS,
    FetchWindow,
    NightscoutConfig,
    configure_dlt,
    fetch_window,
    plan_windows,
)
from engine.ingest.tables import GLUCOSE_ENTRIES, RAW_TABLES
from engine.ingest.validation import validate_glucose_entries
from engine.lake.store import Lake
from engine.lake.views import connect, create_view
from engine.publish.publisher import Publisher
from engine.runs.records import RunTrigger
from engine.runs.store import RunStore
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from engine.transform.models import build_model, discover_models

if __package__ in (None, ""):
    # Run as `python bench/run.py` (also in the spawned engine child): the repository root holds `bench`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import import_csv
from bench.common import (
    HOUR_S,
    SEED,
    TIMEZONE,
    WINDOW_DAYS,
    SimulatorClock,
    fetch_plain,
    median,
    peak_rss_mb,
    print_table,
    step_seconds,
)
from bench.ingest import plain_table
from bench.layers import (
    Dbt,
    DbtDatabases,
    agreement,
    compare,
    load_dbt_raw,
    read_raw,
    upsert_dbt_raw,
    write_dbt_project,
)
from bench.report import fresh_report_seconds

LAYER_STEPS = ("models", "gates", "promote")
HOURLY_STEPS = ("fetch", "validate", "merge", "models", "gates", "promote", "publish")
GOLD_DAILY = "gold.fct_daily_glucose_metrics"
SILVER_READINGS = "silver.fct_glucose_readings"
# iglu and ours compute in double precision over the same values; only summation order differs.
IGLU_TOLERANCE = 1e-9
# The overview's band panel once it has figures: "GMI 6.9%" or "mean 142 mg/dL".
TUI_FIGURES = re.compile(r"GMI\s*\d+(\.\d+)?\s*%|mean\s+\d+(\.\d+)?\s*(mg/dL|mmol/L)")
TUI_SIZE = (120, 40)

# The report period the iglu ratio is measured on; it is also printed for a year.
IGLU_DAYS = 90
IGLU_DAYS_YEAR = 365
# How long the bench waits for the engine process to answer one request before it calls it hung.
ENGINE_ANSWER_S = 1800.0

# key: (comparison, bound); printed beside the figure, never asserted.
REPORT_DAYS = (14, 90)
TARGETS: dict[str, tuple[str, float]] = {
    "ratio_vs_dbt_duckdb": (">=", 1.0),
    "ratio_vs_dbt_cli": (">=", 3.0),
    "ratio_vs_iglu": (">=", 5.0),
    "incremental_run_s": ("<=", 2.0),
    "cli_cold_run_s": ("<=", 4.0),
    "cli_cold_diff_s": ("<=", 2.0),
    "peak_rss_mb": ("<=", 600.0),
    "report_14d_s": ("<=", 3.0),
    "report_90d_s": ("<=", 5.0),
    "import_csv_3mo_s": ("<=", 5.0),
    "import_csv_5y_s": ("<=", 60.0),
    "import_csv_5y_peak_rss_mb": ("<=", 600.0),
}


# -- the engine, in a child process ---------------------------------------------------------------


def engine_env(home: Path, url: str, dsn: str) -> dict[str, str]:
    return {
        "PHLO_HOME": str(home),
        "NIGHTSCOUT_URL": url,
        "PHLO_TIMEZONE": TIMEZONE,
        "PHLO_POSTGRES_DSN": dsn,
        "PHLO_CONFIG": str(home.parent / "no-config.toml"),
    }


def run_figures(engine: Any, run: Any, wall: float) -> dict[str, Any]:
    recorded = engine.list_runs(1)[0]
    return {
        "id": run.id,
        "status": str(run.status),
        "error": run.error,
        "wall_s": wall,
        "steps": step_seconds(recorded.steps),
        "months": list(run.summary.get("months", [])),
        "publish": run.summary.get("publish"),
        "peak_rss_mb": peak_rss_mb(),
    }


class BenchFailed(Exception):
    """Something in the bench failed: the message says what; the bench ends with status 1."""


def failure_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def engine_worker(conn: Connection, home: str, url: str, dsn: str) -> None:
    """One Engine, as the daemon keeps it: ("backfill", now_s, since), ("hour", now_s) ... then ("close",).

    Each request carries the simulator's 'now' (epoch seconds): the engine's data time. A failure is
    answered with {"failed": what}, then the process ends."""
    data_now = [0.0]
    try:
        env = engine_env(Path(home), url, dsn)
        engine = Engine(
            load_settings(env=env, config_path=Path(env["PHLO_CONFIG"])),
            clock=lambda: datetime.fromtimestamp(data_now[0], UTC),
        )
    except Exception as e:
        conn.send({"failed": f"the engine did not start: {failure_text(e)}"})
        return
    conn.send("ready")
    try:
        while True:
            message = conn.recv()
            if message[0] == "close":
                break
            data_now[0] = message[1]
            started = time.perf_counter()
            try:
                if message[0] == "backfill":
                    run = engine.backfill(message[2])
                else:
                    run = engine.run_now(RunTrigger.SCHEDULE)
                figures = run_figures(engine, run, time.perf_counter() - started)
            except Exception as e:
                conn.send({"failed": f"engine {message[0]}: {failure_text(e)}"})
                return
            conn.send(figures)
    finally:
        # Closing releases the writer lease: the CLI and the dashboard take it next.
        engine.close()
    conn.send({"peak_rss_mb": peak_rss_mb()})


def publish_text(summary: Any) -> str:
    """A run's publish summary in brief: the statuses of its tables, or why it was skipped."""
    if isinstance(summary, dict):
        return "/".join(sorted(set(summary.values())))
    return str(summary)


class EngineChild:
    """The engine process, from the bench's side: one request, one answer. A failed run, a failure or
    the death of the process raises BenchFailed; `terminate` (in a finally) never leaves it behind."""

    def __init__(self, ctx: Any, home: Path, url: str, dsn: str) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=engine_worker, args=(child, str(home), url, dsn))
        self.process.start()
        child.close()
        if (answer := self._answer()) != "ready":
            raise BenchFailed(str(answer.get("failed", answer)) if isinstance(answer, dict) else str(answer))

    def _answer(self) -> Any:
        deadline = time.monotonic() + ENGINE_ANSWER_S
        while not self.conn.poll(0.5):
            if not self.process.is_alive():
                raise BenchFailed(f"the engine process died (exit code {self.process.exitcode})")
            if time.monotonic() > deadline:
                raise BenchFailed(f"the engine process did not answer in {ENGINE_ANSWER_S:.0f} s")
        try:
            return self.conn.recv()
        except EOFError:
            raise BenchFailed(f"the engine process died (exit code {self.process.exitcode})") from None

    def ask(self, *message: Any) -> dict[str, Any]:
        self.conn.send(message)
        result: dict[str, Any] = self._answer()
        if "failed" in result:
            raise BenchFailed(result["failed"])
        if "status" in result and result["status"] != "succeeded":
            raise BenchFailed(f"engine run {result['id']} {result['status']}: {result['error']}")
        return result

    def close(self) -> float:
        """Peak RSS of the engine process, MB."""
        peak = self.ask("close")["peak_rss_mb"]
        self.process.join()
        return float(peak)

    def terminate(self) -> None:
        """End the process if it still runs (after a failure): SIGTERM, then SIGKILL after 5 s."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


# -- fetch: dlt + pandera to Arrow against httpx + json + pyarrow ---------------------------------


@dataclass(frozen=True)
class Fetched:
    """One timed fetch: seconds fetching, seconds building the Arrow table, rows in it, the entry ids
    fetched (gathered outside the timers, to check that both fetches got the same rows)."""

    fetch_s: float
    build_s: float
    rows: int
    ids: frozenset[str]


def fetch_ours(url: str, windows: list[FetchWindow], now: datetime) -> Fetched:
    """The engine's fetch (dlt rest_api) and its validation into the lake-ready Arrow batch."""

    config = NightscoutConfig(url=url, page_size=10_000)
    fetch_s = build_s = 0.0
    rows = 0
    ids: set[str] = set()
    for window in windows:
        started = time.perf_counter()
        entries = fetch_window(config, window)
        fetched = time.perf_counter()
        batch = validate_glucose_entries(entries, run_id="bench", source=url, now=now)
        fetch_s += fetched - started
        build_s += time.perf_counter() - fetched
        rows += batch.valid.num_rows
        ids.update(str(e.get("_id")) for e in entries)
    return Fetched(fetch_s, build_s, rows, frozenset(ids))


def fetch_baseline(url: str, windows: list[FetchWindow], now: datetime) -> Fetched:
    """httpx + json for the same pages, then a pyarrow table of the lake's columns (bench/ingest.py)."""
    fetch_s = build_s = 0.0
    rows = 0
    ids: set[str] = set()
    with httpx.Client(timeout=60.0) as client:
        for window in windows:
            started = time.perf_counter()
            entries = fetch_plain(client, url, window)
            fetched = time.perf_counter()
            table = plain_table(entries, now)
            fetch_s += fetched - started
            build_s += time.perf_counter() - fetched
            rows += table.num_rows
            ids.update(str(e.get("_id")) for e in entries)
    return Fetched(fetch_s, build_s, rows, frozenset(ids))


# -- daily metrics: ours (gold model in DuckDB) against iglu-python --------------------------------

# Our gold column -> how to get the same figure from iglu's per-day frame.
IGLU_METRICS: dict[str, Callable[[Any], Any]] = {
    "avg_glucose_mg_dl": lambda r: r["mean"],
    "stddev_glucose_mg_dl": lambda r: r["SD"],
    "cv_pct": lambda r: r["CV"],
    "estimated_a1c_pct": lambda r: r["GMI"],
    "time_in_range_pct": lambda r: r["in_range_70_180"],
    "time_very_low_pct": lambda r: r["below_54"],
    "time_below_range_pct": lambda r: r["below_70"],
    "time_low_pct": lambda r: r["below_70"] - r["below_54"],
    "time_above_range_pct": lambda r: r["above_180"],
    "time_high_pct": lambda r: r["above_180"] - r["above_250"],
    "time_very_high_pct": lambda r: r["above_250"],
    "gri": lambda r: r["GRI"],
    "lbgi": lambda r: r["LBGI"],
    "hbgi": lambda r: r["HBGI"],
}


def period_start(readings: pa.Table, days: int) -> datetime:
    """Local midnight `days - 1` days before the day of the newest reading: the first instant of the
    last `days` local days of the history."""
    zone = ZoneInfo(TIMEZONE)
    newest = readings["reading_ts"].to_pylist()
    last_day = max(newest).astimezone(zone).date()
    return datetime.combine(last_day - timedelta(days=days - 1), datetime.min.time(), zone)


def readings_since(readings: pa.Table, start: datetime) -> pa.Table:
    import pyarrow.compute as pc

    return readings.filter(
        pc.greater_equal(readings["reading_ts"], pa.scalar(start, readings["reading_ts"].type))
    )


def metrics_ours(lake: Lake, start: datetime) -> tuple[float, pa.Table]:
    """A full refresh of gold.fct_daily_glucose_metrics in DuckDB for the days from `start`: its input
    (silver readings, the Parquet files of dev's head, from `start`) registered, the model's SQL run,
    the output as Arrow. No lake write."""
    model = next(m for m in discover_models(sources=[t.name for t in RAW_TABLES]) if m.name == GOLD_DAILY)
    con = connect(TIMEZONE)

    def register(c: Any, name: str, _: Any) -> None:
        # The report period, as a person asks for it: the model reads only its days (every input of
        # the daily model has reading_ts).
        whole = name.replace(".", "_") + "_whole"
        lake.register_duckdb(c, name, "dev", as_name=whole)
        create_view(c, name, f"select * from {whole} where reading_ts >= '{start.isoformat()}'::timestamptz")

    try:
        started = time.perf_counter()
        result = build_model(con, model, None, register)
        seconds = time.perf_counter() - started
    finally:
        con.close()
    assert result.output is not None
    return seconds, result.output


def metrics_iglu(readings: pa.Table) -> tuple[float, Any]:
    """iglu-python's daily metrics, each local day a subject: the frame built from the same silver
    readings (Arrow, in memory) and every iglu function that matches a gold column."""
    import iglu_python as iglu
    import pandas as pd

    started = time.perf_counter()
    local = readings["reading_ts"].to_pandas().dt.tz_convert(TIMEZONE)
    data = pd.DataFrame(
        {
            "id": local.dt.date.astype(str),
            "time": local,
            "gl": readings["glucose_mg_dl"].to_pandas().astype(float),
        }
    )
    frames = [
        iglu.mean_glu(data),
        iglu.sd_glu(data),
        iglu.cv_glu(data),
        iglu.gmi(data),
        iglu.in_range_percent(data, target_ranges=[[70, 180]]),
        iglu.below_percent(data, targets_below=[54, 70]),
        iglu.above_percent(data, targets_above=[180, 250]),
        iglu.gri(data),
        iglu.lbgi(data),
        iglu.hbgi(data),
    ]
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on="id")
    return time.perf_counter() - started, merged.set_index("id")


def iglu_agreement(ours: pa.Table, theirs: Any) -> tuple[bool, dict[str, float]]:
    """Max abs difference per metric over the days, and whether every one is within tolerance."""
    rows = {str(r["reading_date"]): r for r in ours.to_pylist()}
    same_days = sorted(rows) == sorted(theirs.index)
    diffs: dict[str, float] = {}
    agree = same_days
    for column, pick in IGLU_METRICS.items():
        worst = 0.0
        for day, ref in theirs.iterrows():
            if day not in rows:
                continue
            mine, expected = rows[day][column], float(pick(ref))
            if mine is None or math.isnan(expected):
                # Undefined on both sides agrees (a day of one reading has no sample SD or CV);
                # undefined on one side only does not.
                if (mine is None) != math.isnan(expected):
                    worst, agree = math.inf, False
                continue
            diff = abs(float(mine) - expected)
            worst = max(worst, diff)
            agree = agree and diff <= IGLU_TOLERANCE * max(1.0, abs(expected))
        diffs[column] = worst
    return agree, diffs


# -- the CLI and the dashboard, as subprocesses -----------------------------------------------------


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without the user's phlo or Nightscout settings, plus `extra`. Without
    PYTHONDONTWRITEBYTECODE too: a person's Python caches bytecode, and with it set every `phlo-tui`
    process compiled every module it imports from source (seconds of `cli_cold_run_s`)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHLO_", "NIGHTSCOUT_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    return {**env, "RUNTIME__DLTHUB_TELEMETRY": "false", **extra}


def cli_run(env: dict[str, str], command_name: str = "run") -> tuple[float, float]:
    """`phlo-tui run` (or another command) as a fresh process: (seconds from spawn to exit, its peak RSS in MB).

    The peak is its VmHWM, polled every 10 ms until it exits (growth in its last 10 ms is missed);
    its ru_maxrss would include this bench process's RSS (see bench.common.peak_rss_mb).
    """
    command = [str(Path(sys.executable).with_name("phlo-tui")), command_name]
    peak = 0.0
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None:
            peak = max(peak, nan_to_zero(peak_rss_mb(process.pid)))
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            output.seek(0)
            raise SystemExit(
                f"phlo-tui {command_name} exited {process.returncode}:\n{output.read().decode()}"
            )
    return seconds, peak


def nan_to_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def tui_first_paint(env: dict[str, str], timeout_s: float = 90.0) -> float:
    """Seconds from starting `phlo-tui` in a fresh tmux (its own server socket) until the screen
    shows glucose figures (the overview's mean or GMI); nan when they never appear."""
    # A server of its own per call: nothing shared with the user's tmux or with the previous call.
    socket = f"phlo-bench-{os.getpid()}-{time.monotonic_ns()}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    app = shlex.join(
        [
            "env",
            *(f"{k}={v}" for k, v in env.items() if k.startswith(("PHLO_", "NIGHTSCOUT_"))),
            str(Path(sys.executable).with_name("phlo-tui")),
        ]
    )
    # Should the app end early, its last words and status stay on the screen for the report.
    command = f'{app}; echo "phlo-tui exited with status $?"; sleep 60'
    width, height = TUI_SIZE
    started = time.perf_counter()
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), command],
        check=True,
        env={k: v for k, v in env.items() if k != "TMUX"},
    )
    shell = subprocess.run(
        [*tmux, "display-message", "-p", "-t", "tui", "#{pane_pid}"], capture_output=True, text=True
    ).stdout.strip()
    screen = ""
    try:
        while time.perf_counter() - started < timeout_s and "phlo-tui exited" not in screen:
            done = subprocess.run([*tmux, "capture-pane", "-p", "-t", "tui"], capture_output=True, text=True)
            screen = done.stdout
            if TUI_FIGURES.search(screen):
                return time.perf_counter() - started
            time.sleep(0.05)
        print(
            f"the dashboard showed no glucose figures ({time.perf_counter() - started:.0f} s); its screen:\n{screen}"
        )
        return math.nan
    finally:
        pane = _process_tree(int(shell)) if shell.isdigit() else []
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        # tmux leaves the socket file of a killed server behind.
        (Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}" / socket).unlink(missing_ok=True)
        # The next start should find the app gone and its writer lease free.
        psutil.wait_procs(pane, timeout=30)


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Figures:
    days: int
    rows: int = 0
    backfill: dict[str, Any] = field(default_factory=dict)
    hours: list[dict[str, Any]] = field(default_factory=list)
    dbt: dict[str, list[float]] = field(default_factory=lambda: {"warm": [], "cli": []})
    dbt_agree: bool = False
    cli: list[tuple[float, float]] = field(default_factory=list)
    cli_steps: list[dict[str, float]] = field(default_factory=list)
    cli_diff: list[float] = field(default_factory=list)
    publish: list[float] = field(default_factory=list)
    publish_rows: int = 0
    fetch: dict[str, list[tuple[float, float, int]]] = field(default_factory=lambda: {"ours": [], "base": []})
    fetch_agree: bool = False
    metrics: dict[str, list[float]] = field(
        default_factory=lambda: {"ours": [], "iglu": [], "ours_year": [], "iglu_year": []}
    )
    iglu_agree: bool = False
    iglu_diffs: dict[str, float] = field(default_factory=dict)
    iglu_days: int = 0
    iglu_year_days: int = 0
    quiet_hours: int = 0
    tui: list[float] = field(default_factory=list)
    report_s: dict[int, float] = field(default_factory=dict)
    """Days of the report -> median seconds of a fresh `phlo-tui report` process."""
    import_csv: dict[str, Any] = field(default_factory=dict)
    """bench/import_csv.py's figures: a Clarity export of 3 months (and of 5 years for a 5-year bench)."""
    peak_rss_mb: float = 0.0


def alternate(repeat: int, contenders: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run the contenders once each, the order rotated by the repeat number; their results by name."""
    names = list(contenders)
    shift = repeat % len(names)
    return {name: contenders[name]() for name in names[shift:] + names[:shift]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one year of history instead of five, 3 repeats")
    parser.add_argument("--days", type=int, help="days of history (default 1825, 365 with --quick)")
    parser.add_argument("--repeats", type=int, help="repeats of each timed piece (default 5, 3 with --quick)")
    parser.add_argument("--hours", type=int, help="timed warm hourly runs (default 7, 5 with --quick)")
    parser.add_argument(
        "--start",
        help="the simulated instant of the backfill, ISO 8601 with offset, e.g. 2027-03-28T00:05:00+01:00 "
        "(default: now); each warm or CLI run is one simulated hour later",
    )
    args = parser.parse_args(argv)
    try:
        start = parse_instant(args.start, "--start") if args.start else datetime.now(UTC)
    except ConfigError as e:
        parser.error(f"{e.message} ({e.hint})")
    days = args.days or (365 if args.quick else 5 * 365)
    repeats = max(1, args.repeats or (3 if args.quick else 5))
    hours = max(1, args.hours or (5 if args.quick else 7))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    started = time.perf_counter()

    from tests.pgserver import PgServer, server_bindir

    bindir = server_bindir()
    if bindir is None:
        raise SystemExit("bench/run.py needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    # The backfill at `start`, then the warm hours and the CLI's runs, each one simulated hour on.
    clock = SimulatorClock(start=start.timestamp(), behind_s=0.0)
    zone = ZoneInfo(TIMEZONE)
    since = start.astimezone(zone).date() - timedelta(days=days)
    out = Figures(days)
    try:
        pg = PgServer(bindir).start()
        try:
            with (
                tempfile.TemporaryDirectory(prefix="phlo-bench-run-") as tmp_name,
                SimulatorServer(GlucoseSimulator(seed=SEED, tz=TIMEZONE, clock=clock)) as server,
            ):
                tmp = Path(tmp_name)
                print(
                    f"simulator {server.url} from {start.astimezone(zone).isoformat()} ({TIMEZONE}), "
                    f"{days} days from {since}, {repeats} repeat(s), {hours} warm hour(s); PostgreSQL {pg.port}",
                    flush=True,
                )
                measure(out, tmp, server.url, pg, since, clock, repeats, hours)
        finally:
            pg.cleanup()
    except BenchFailed as e:
        raise SystemExit(f"bench failed: {e}") from None
    except Exception as e:
        traceback.print_exc()
        raise SystemExit(f"bench failed: {failure_text(e)}") from None
    report(out, repeats, hours, time.perf_counter() - started)


def measure(
    out: Figures, tmp: Path, url: str, pg: Any, since: date, clock: SimulatorClock, repeats: int, hours: int
) -> None:
    since_ms = int(datetime.combine(since, datetime.min.time(), ZoneInfo(TIMEZONE)).timestamp() * 1000)
    until_ms = int(clock() * 1000)
    windows = plan_windows(since_ms - DAY_MS, until_ms, WINDOW_DAYS)
    # The simulator generates each day once and caches it: warm it so that nobody pays for that.
    with httpx.Client(timeout=120.0) as client:
        for window in windows:
            fetch_plain(client, url, window)

    home = tmp / "home"
    dsn = pg.create_database("lakehouse")
    engine = EngineChild(mp.get_context("spawn"), home, url, dsn)
    try:
        out.backfill = engine.ask("backfill", clock(), since.isoformat())
        print(
            f"backfill: {out.backfill['wall_s']:.2f} s, publish {publish_text(out.backfill['publish'])}, "
            f"engine peak RSS so far {out.backfill['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        lake = Lake(home / "lake")
        warm_hours(out, tmp, lake, engine, clock, hours)
        out.peak_rss_mb = engine.close()
    finally:
        engine.terminate()

    env = clean_env(engine_env(home, url, dsn))
    cold_runs(out, env, clock, repeats)
    publishes(out, tmp, home, url, lake, pg, repeats)
    year = [w for w in windows if w.end_ms > until_ms - 366 * DAY_MS]
    fetches(out, tmp, url, year, repeats, datetime.fromtimestamp(clock(), UTC))
    daily_metrics(out, lake, repeats)
    reports(out, {**env, NOW_ENV: data_time(clock)}, repeats)
    # The 5-year export only beside a 5-year history: it takes minutes.
    out.import_csv = import_csv.figures(pg, five_years=out.days >= 5 * 365)
    for _ in range(min(repeats, 3)):
        out.tui.append(tui_first_paint({**env, NOW_ENV: data_time(clock)}))
        print(f"dashboard first paint: {out.tui[-1]:.2f} s", flush=True)


def warm_hours(
    out: Figures, tmp: Path, lake: Lake, engine: EngineChild, clock: SimulatorClock, hours: int
) -> None:
    """One simulator hour at a time: ours in the warm engine process, then dbt on the rows our run
    stored and the months it touched, warm and as a CLI process in alternating order. Hour 0 is
    untimed, for both."""
    models = discover_models(sources=[t.name for t in RAW_TABLES])
    raws = read_raw(lake, models)
    out.rows = raws[GLUCOSE_ENTRIES.name].num_rows
    databases = DbtDatabases(tmp / "dbt" / "phlo.duckdb", tmp / "dbt" / "phlo_cli.duckdb")
    write_dbt_project(tmp / "dbt", databases, models, TIMEZONE)
    for database in databases.both():
        load_dbt_raw(database, raws)
    del raws
    dbt = Dbt(tmp / "dbt")
    for hour in range(hours + 1):
        clock.advance(HOUR_S)
        ours = engine.ask("hour", clock())
        new = read_raw(lake, models, ours["id"])
        new_rows = new[GLUCOSE_ENTRIES.name]
        for database in databases.both():
            upsert_dbt_raw(database, new, ours["months"])
        # Each CLI run is a fresh process: only the in-process dbt has anything to warm up.
        timed = alternate(hour, {"warm": dbt.warm, "cli": dbt.cli} if hour else {"warm": dbt.warm})
        layers = sum(ours["steps"].get(s, 0.0) for s in LAYER_STEPS)
        quiet = new_rows.num_rows == 0
        out.quiet_hours += quiet
        print(
            f"hour {hour}{' (untimed)' if hour == 0 else ''} to {local_time(clock)}: run {ours['wall_s']:.3f} s, "
            + ("nothing new (a signal loss or sensor warm-up: a normal hour), " if quiet else "")
            + f"{new_rows.num_rows} new rows, months {ours['months']}, layers+gates+promote {layers:.3f} s, "
            f"publish {publish_text(ours['publish'])}; dbt "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timed.items()),
            flush=True,
        )
        if hour:
            out.hours.append(ours)
            for name, seconds in timed.items():
                out.dbt[name].append(seconds)
    out.dbt_agree = (
        agreement(compare(lake, models, databases.in_process))[0]
        and agreement(compare(lake, models, databases.cli))[0]
    )


def cold_runs(out: Figures, env: dict[str, str], clock: SimulatorClock, repeats: int) -> None:
    """A `phlo-tui run` process per simulator hour on the same home, once the engine process has
    released the writer lease; then a `phlo-tui diff` process on what it left."""
    for _ in range(repeats):
        clock.advance(HOUR_S)
        out.cli.append(cli_run({**env, NOW_ENV: data_time(clock)}))
        store = RunStore(Path(env["PHLO_HOME"]) / "runs.sqlite")
        try:
            steps = step_seconds(store.list_runs(1)[0].steps)
        finally:
            store.close()
        out.cli_steps.append(steps)
        out.cli_diff.append(cli_run({**env, NOW_ENV: data_time(clock)}, "diff")[0])
        print(
            f"phlo-tui run to {local_time(clock)}: {out.cli[-1][0]:.2f} s, peak RSS {out.cli[-1][1]:.0f} MB; its steps "
            + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in steps.items())
            + f"; then phlo-tui diff {out.cli_diff[-1]:.2f} s",
            flush=True,
        )


def publishes(out: Figures, tmp: Path, home: Path, url: str, lake: Lake, pg: Any, repeats: int) -> None:
    """The last promotion published into a fresh database each time: nothing is skipped as unchanged."""
    store = RunStore(home / "runs.sqlite")
    try:
        record = store.last_promotion()
    finally:
        store.close()
    assert record is not None, "the runs promoted nothing"
    for r in range(repeats):
        target = pg.create_database(f"publish_{r}")
        settings = load_settings(env=engine_env(home, url, target), config_path=tmp / "no-config.toml")
        publisher = Publisher(settings, lake)
        try:
            started = time.perf_counter()
            outcome = publisher.publish(record)
            out.publish.append(time.perf_counter() - started)
        finally:
            publisher.close()
        out.publish_rows = outcome.published_rows
    print(f"publish: {', '.join(f'{s:.2f}' for s in out.publish)} s, {out.publish_rows:,} rows", flush=True)


def data_time(clock: SimulatorClock) -> str:
    """The simulator's 'now' as PHLO_NOW: a CLI or dashboard process started now lives there."""
    return datetime.fromtimestamp(clock(), UTC).isoformat()


def local_time(clock: SimulatorClock) -> str:
    return datetime.fromtimestamp(clock(), ZoneInfo(TIMEZONE)).strftime("%Y-%m-%d %H:%M %Z")


def fetches(
    out: Figures, tmp: Path, url: str, windows: list[FetchWindow], repeats: int, now: datetime
) -> None:
    """Ours against httpx + pyarrow over the same windows, alternating; then whether both got the same rows."""
    configure_dlt(tmp / "fetch-home")
    import dlt.sources.rest_api  # noqa: F401 - paid once per process, kept out of the timed fetches

    fetch_ours(url, windows[-1:], now)
    for r in range(repeats):
        timed = alternate(
            r,
            {
                "ours": lambda: fetch_ours(url, windows, now),
                "base": lambda: fetch_baseline(url, windows, now),
            },
        )
        for name, result in timed.items():
            out.fetch[name].append(result)
    out.fetch_agree = all(f.ids == out.fetch["base"][0].ids for f in out.fetch["ours"] + out.fetch["base"])
    print(
        f"fetch: ours {median(f.fetch_s + f.build_s for f in out.fetch['ours']):.2f} s, "
        f"httpx + pyarrow {median(f.fetch_s + f.build_s for f in out.fetch['base']):.2f} s, "
        f"same {len(out.fetch['base'][0].ids):,} entries: {out.fetch_agree}",
        flush=True,
    )


def daily_metrics(out: Figures, lake: Lake, repeats: int) -> None:
    """The gold model against iglu over the last 90 days (a report period) and the last 365, alternating;
    then their values compared on the 90 days."""
    readings = lake.read_arrow(SILVER_READINGS, "dev", columns=["reading_ts", "glucose_mg_dl"])
    for days, ours_key, iglu_key in ((IGLU_DAYS, "ours", "iglu"), (IGLU_DAYS_YEAR, "ours_year", "iglu_year")):
        start = period_start(readings, days)
        period = readings_since(readings, start)
        found: dict[str, Any] = {}
        for r in range(repeats):
            timed = alternate(
                r,
                {
                    ours_key: functools.partial(metrics_ours, lake, start),
                    iglu_key: functools.partial(metrics_iglu, period),
                },
            )
            for name, (seconds, result) in timed.items():
                out.metrics[name].append(seconds)
                found[name] = result
        agree, diffs = iglu_agreement(found[ours_key], found[iglu_key])
        if days == IGLU_DAYS:
            out.iglu_agree, out.iglu_diffs = agree, diffs
            out.iglu_days = found[ours_key].num_rows
        else:
            out.iglu_agree = out.iglu_agree and agree
            out.iglu_year_days = found[ours_key].num_rows
        print(
            f"daily metrics, last {days} days ({found[ours_key].num_rows} local days of history): "
            f"ours {median(out.metrics[ours_key]):.2f} s, iglu {median(out.metrics[iglu_key]):.2f} s, agree {agree}",
            flush=True,
        )


def reports(out: Figures, env: dict[str, str], repeats: int) -> None:
    """`phlo-tui report` of the last 14 and the last 90 full days (PDF) as fresh processes, as bench/report.py
    times them."""
    for days in REPORT_DAYS:
        out.report_s[days] = fresh_report_seconds(env, days, repeats, warm=days == REPORT_DAYS[0])
        print(f"report of the last {days} days: {out.report_s[days]:.2f} s", flush=True)


# -- the report -----------------------------------------------------------------------------------


def verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound
    return f"{op} {bound:g} {'✓' if ok and not math.isnan(value) else '✗'}"


def report(out: Figures, repeats: int, hours: int, total_s: float) -> None:
    def hourly(*steps: str) -> float:
        return median(sum(h["steps"].get(s, 0.0) for s in steps) for h in out.hours)

    # A longer history is reported per 365 days; a shorter one is not scaled up (start-up would dominate).
    backfill_365d = out.backfill["wall_s"] * 365 / out.days if out.days >= 365 else None
    incremental = median(h["wall_s"] for h in out.hours)
    layers = hourly(*LAYER_STEPS)
    dbt_warm, dbt_cli = median(out.dbt["warm"]), median(out.dbt["cli"])
    cli = median(c[0] for c in out.cli)
    fetch_ours_s = median(f.fetch_s + f.build_s for f in out.fetch["ours"])
    fetch_base_s = median(f.fetch_s + f.build_s for f in out.fetch["base"])
    fetch_only_ours = median(f.fetch_s for f in out.fetch["ours"])
    fetch_only_base = median(f.fetch_s for f in out.fetch["base"])
    metrics_ours_s, metrics_iglu_s = median(out.metrics["ours"]), median(out.metrics["iglu"])
    year_ours_s, year_iglu_s = median(out.metrics["ours_year"]), median(out.metrics["iglu_year"])

    def ratio(theirs: float, ours: float) -> float:
        return theirs / ours if ours else math.nan

    figures: dict[str, Any] = {
        "days": out.days,
        "rows": out.rows,
        "repeats": repeats,
        "hours": hours,
        "quiet_hours": out.quiet_hours,
        "backfill_365d_s": None if backfill_365d is None else round(backfill_365d, 3),
        "backfill_s": round(out.backfill["wall_s"], 3),
        "incremental_run_s": round(incremental, 4),
        "cli_cold_run_s": round(cli, 3),
        "cli_cold_run_steps_s": round(median(sum(steps.values()) for steps in out.cli_steps), 3),
        "cli_cold_diff_s": round(median(out.cli_diff), 3),
        "layers_incremental_s": round(layers, 4),
        "dbt_incremental_cli_s": round(dbt_cli, 3),
        "dbt_incremental_warm_s": round(dbt_warm, 3),
        "ratio_vs_dbt_duckdb": round(ratio(dbt_warm, layers), 3),
        "ratio_vs_dbt_cli": round(ratio(dbt_cli, layers), 3),
        "dbt_outputs_agree": out.dbt_agree,
        "iglu_days": out.iglu_days,
        "metrics_ours_s": round(metrics_ours_s, 4),
        "metrics_iglu_s": round(metrics_iglu_s, 3),
        "ratio_vs_iglu": round(ratio(metrics_iglu_s, metrics_ours_s), 3),
        "iglu_365d_days": out.iglu_year_days,
        "metrics_ours_365d_s": round(year_ours_s, 4),
        "metrics_iglu_365d_s": round(year_iglu_s, 3),
        "ratio_vs_iglu_365d": round(ratio(year_iglu_s, year_ours_s), 3),
        "iglu_values_agree": out.iglu_agree,
        "iglu_max_abs_diff": {k: float(f"{v:.3g}") for k, v in out.iglu_diffs.items()},
        "fetch_ours_s": round(fetch_ours_s, 3),
        "fetch_httpx_pyarrow_s": round(fetch_base_s, 3),
        "ratio_vs_httpx_baseline": round(ratio(fetch_ours_s, fetch_base_s), 3),
        "ratio_fetch_only_vs_httpx": round(ratio(fetch_only_ours, fetch_only_base), 3),
        "fetch_rows_agree": out.fetch_agree,
        "publish_s": round(median(out.publish), 3),
        "publish_rows": out.publish_rows,
        "tui_first_paint_s": round(median(out.tui), 3),
        **{f"report_{days}d_s": round(seconds, 3) for days, seconds in out.report_s.items()},
        **out.import_csv,
        "peak_rss_mb": round(out.peak_rss_mb, 1),
        "peak_rss_after_backfill_mb": round(out.backfill["peak_rss_mb"], 1),
        "cli_peak_rss_mb": round(max(c[1] for c in out.cli), 1),
        "bench_s": round(total_s, 1),
        "targets": {k: f"{op} {bound:g}" for k, (op, bound) in TARGETS.items()},
    }
    rows: list[tuple[str, str, str, str, str]] = []

    def line(
        label: str, key: str | None, ours: float | None, peer: float | None = None, unit: str = "s"
    ) -> None:
        value = figures[key] if key else None
        shown_ratio = f"{figures[key]:.2f}" if key and key.startswith("ratio") else ""
        rows.append(
            (
                label,
                "" if ours is None else f"{ours:.3f} {unit}" if unit == "s" else f"{ours:.0f} {unit}",
                "" if peer is None else f"{peer:.3f} s",
                shown_ratio,
                verdict(key, value) if key and isinstance(value, float) else "",
            )
        )

    line(f"backfill of {out.days} days through the engine (whole run)", None, out.backfill["wall_s"])
    line("  per 365 days (not shown below a year of history)", "backfill_365d_s", backfill_365d)
    line(f"one new hour on {out.days} days, warm engine (ingest..publish)", "incremental_run_s", incremental)
    for step in HOURLY_STEPS:
        line(f"  {step}", None, hourly(step))
    line("  the same as a fresh `phlo-tui run` process", "cli_cold_run_s", cli)
    cli_recorded = median(sum(steps.values()) for steps in out.cli_steps)
    line("    of which its recorded steps (the rest: start-up, imports, opening)", None, cli_recorded)
    line(
        "  then a fresh `phlo-tui diff` process (dev against main)",
        "cli_cold_diff_s",
        figures["cli_cold_diff_s"],
    )
    line(
        "layers + gates + promote, warm engine | dbt-duckdb warm in-process (parsed manifest)",
        "ratio_vs_dbt_duckdb",
        layers,
        dbt_warm,
    )
    line(
        "layers + gates + promote, warm engine | a fresh `dbt run` process",
        "ratio_vs_dbt_cli",
        layers,
        dbt_cli,
    )
    line(
        f"daily metrics, last {out.iglu_days} days: gold model | iglu-python",
        "ratio_vs_iglu",
        metrics_ours_s,
        metrics_iglu_s,
    )
    line(
        f"  the same on the last {out.iglu_year_days} days (iglu grows faster than linearly)",
        "ratio_vs_iglu_365d",
        year_ours_s,
        year_iglu_s,
    )
    line(
        "fetch to Arrow: dlt + pandera | httpx + json + pyarrow",
        "ratio_vs_httpx_baseline",
        fetch_ours_s,
        fetch_base_s,
    )
    line("  fetch alone: dlt | httpx + json", "ratio_fetch_only_vs_httpx", fetch_only_ours, fetch_only_base)
    line(
        f"publish the marts into an empty database ({out.publish_rows:,} rows)",
        "publish_s",
        figures["publish_s"],
    )
    line("dashboard: start to the first glucose figures", "tui_first_paint_s", figures["tui_first_paint_s"])
    for days in REPORT_DAYS:
        key = f"report_{days}d_s"
        line(f"`phlo-tui report` of the last {days} days (PDF, a fresh process)", key, figures[key])
    for key, label in (("3mo", "3 months"), ("5y", "5 years")):
        if f"import_csv_{key}_s" in figures:
            lines = figures[f"import_csv_{key}_lines"]
            line(
                f"`import` of a Clarity export, {label} ({lines:,} lines) to published",
                f"import_csv_{key}_s",
                figures[f"import_csv_{key}_s"],
            )
            line(
                "  its peak RSS (a fresh process)",
                f"import_csv_{key}_peak_rss_mb",
                figures[f"import_csv_{key}_peak_rss_mb"],
                unit="MB",
            )
    line("peak RSS of the engine process", "peak_rss_mb", out.peak_rss_mb, unit="MB")
    line("peak RSS of a `phlo-tui run` process", None, figures["cli_peak_rss_mb"], unit="MB")

    print()
    print(
        f"medians of {repeats} repeat(s) and {hours} warm hour(s); ratio = peer seconds / ours "
        f"(httpx: ours / baseline); whole bench {total_s:.0f} s"
    )
    print_table(("figure", "ours", "peer", "ratio", "target"), rows)
    print(f"dbt outputs equal ours (row counts and checksums, in-process and CLI databases): {out.dbt_agree}")
    print(f"our fetch and the httpx baseline got the same entries: {out.fetch_agree}")
    if out.quiet_hours:
        print(
            f"{out.quiet_hours} warm hour(s) brought no new reading (signal loss, sensor warm-up): normal hours"
        )
    print(
        f"iglu values agree within {IGLU_TOLERANCE:g} relative: {out.iglu_agree}; max abs difference: "
        + ", ".join(f"{k} {v:.2g}" for k, v in out.iglu_diffs.items())
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
