"""Bench: a year's backfill and hourly runs from the simulator, through the engine and a plain baseline.

Three contenders read the same simulator over loopback HTTP, each in a fresh process (so peak RSS is
its own), in alternating order per repeat:

- engine:   `Engine.backfill` / `Engine.run_now` exactly as the CLI runs them (ingest, layers, gates,
            promotion); the ingest figures are the run's recorded fetch + validate + merge steps.
- pieces:   the engine's ingest functions called directly (plan_windows, fetch_window,
            validate_glucose_entries, Lake.merge), without the run store around them.
- baseline: httpx + json for the same paging, a pyarrow table of the lake's columns, and a plain
            pyiceberg append of the same rows into a fresh table of the same schema and partitioning.

The simulator runs in this (parent) process, pinned some hours behind real time so that hourly steps
of its clock stay in the past for the engine, whose clock is the real one. Prints figures; asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from engine.ingest.nightscout import DAY_MS, FetchWindow, plan_windows
from engine.ingest.tables import GLUCOSE_ENTRIES
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

if __package__ in (None, ""):
    # Run as `python bench/ingest.py` (also in the spawned children): the repository root holds `bench`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    PAGE_SIZE,
    SEED,
    TIMEZONE,
    WINDOW_DAYS,
    SimulatorClock,
    current_rss_mb,
    fetch_plain,
    median,
    peak_rss_mb,
    print_table,
    step_seconds,
)

HOUR_MS = 3_600_000
LOOKBACK_MS = 60 * 60_000
INGEST_STEPS = ("fetch", "validate", "merge")

TARGETS = {
    "backfill_s": 30.0,
    "hourly_ingest_s": 1.0,
    "peak_rss_mb": 500.0,
    "ratio_fetch_vs_httpx": 2.0,
}

# Nightscout's camelCase keys for the lake columns named otherwise.
SOURCE_KEYS = {"date_string": "dateString", "sys_time": "sysTime", "utc_offset": "utcOffset"}


# -- measurement helpers --------------------------------------------------------------------------


class Stopwatch:
    """Sums seconds per phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def other_steps(runs: list[dict[str, Any]]) -> list[str]:
    """The recorded steps of `runs` besides the ingest ones, in the order they first ran."""
    names = [name for run in runs for name in run["steps"] if name not in INGEST_STEPS]
    return list(dict.fromkeys(names))


def step_rows(steps: list[Any], name: str) -> int:
    return sum(step.rows or 0 for step in steps if step.name == name)


# -- the engine, in a child process ---------------------------------------------------------------


def import_dlt() -> float:
    """Import what fetching imports on first use; seconds. Call after configure_dlt (Engine does)."""
    started = time.perf_counter()
    import dlt.sources.helpers.requests
    import dlt.sources.helpers.rest_client.paginators
    import dlt.sources.rest_api  # noqa: F401

    return time.perf_counter() - started


def _engine(home: Path, url: str) -> Any:
    from engine.api.facade import Engine
    from engine.config import load_settings

    env = {"PHLO_HOME": str(home), "NIGHTSCOUT_URL": url, "PHLO_TIMEZONE": TIMEZONE}
    return Engine(load_settings(env=env, config_path=home / "no-config.toml"))


def engine_backfill(conn: Connection, home: str, url: str, since: str) -> None:
    """`phlo-tui backfill --since <since>` in this process; sends the run's figures."""
    with _engine(Path(home), url) as engine:
        # Paid once per process, also by a warm daemon's first run: timed apart from the fetches.
        dlt_import = import_dlt()
        rss_before = current_rss_mb()
        started = time.perf_counter()
        run = engine.backfill(since)
        wall = time.perf_counter() - started
        steps = engine.list_runs(1)[0].steps
    conn.send(
        {
            "status": str(run.status),
            "wall_s": wall,
            "steps": step_seconds(steps),
            "fetched": step_rows(steps, "fetch"),
            "merged": step_rows(steps, "merge"),
            "dlt_import_s": dlt_import,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def engine_hourly(conn: Connection, home: str, url: str) -> None:
    """Scheduled runs on request ("run"), one per message, until "stop"."""
    with _engine(Path(home), url) as engine:
        from engine.runs.records import RunTrigger

        conn.send("ready")
        while conn.recv() == "run":
            started = time.perf_counter()
            run = engine.run_now(RunTrigger.SCHEDULE)
            wall = time.perf_counter() - started
            steps = engine.list_runs(1)[0].steps
            conn.send(
                {
                    "status": str(run.status),
                    "wall_s": wall,
                    "steps": step_seconds(steps),
                    "fetched": step_rows(steps, "fetch"),
                    "merged": step_rows(steps, "merge"),
                    "peak_rss_mb": peak_rss_mb(),
                }
            )


def pieces_backfill(conn: Connection, home: str, url: str, since_ms: int, until_ms: int) -> None:
    """The engine's ingest functions back to back, with no run store, watermark or layers."""
    from engine.ingest.nightscout import NightscoutConfig, configure_dlt, fetch_window
    from engine.ingest.validation import validate_glucose_entries
    from engine.lake.store import Lake

    configure_dlt(Path(home))
    import_dlt()
    config = NightscoutConfig(url=url, page_size=PAGE_SIZE)
    lake = Lake(Path(home) / "lake")
    lake.ensure_table(GLUCOSE_ENTRIES)
    rss_before = current_rss_mb()
    watch = Stopwatch()
    fetched = merged = 0
    for window in plan_windows(since_ms, until_ms, WINDOW_DAYS):
        with watch.phase("fetch"):
            entries = fetch_window(config, window)
        now = datetime.now(UTC)
        with watch.phase("validate"):
            batch = validate_glucose_entries(entries, run_id="bench", source=url, now=now)
        with watch.phase("merge"):
            result = lake.merge(GLUCOSE_ENTRIES, batch.valid)
        fetched += len(entries)
        merged += result.rows_inserted + result.rows_updated
    conn.send(
        {
            "steps": watch.seconds,
            "fetched": fetched,
            "merged": merged,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


# -- the baseline, in a child process -------------------------------------------------------------


def _whole_number(value: Any) -> Any:
    # Some uploaders send sgv as a string; the one coercion a plain loader cannot skip.
    return int(value) if isinstance(value, str) else value


def plain_table(entries: list[dict[str, Any]], stamp: datetime) -> pa.Table:
    """The lake's columns built straight from the JSON documents: no validation, no dedup."""
    count = len(entries)
    schema = GLUCOSE_ENTRIES.arrow_schema
    dates = pa.array([e["date"] for e in entries], pa.int64())
    reading_ts = pc.multiply(dates, 1000).cast(pa.timestamp("us", tz="UTC"))
    derived = {
        "reading_ts": reading_ts,
        "reading_month": pc.strftime(reading_ts, "%Y-%m"),
        "_phlo_ingested_at": pa.array([stamp] * count, pa.timestamp("us", tz="UTC")),
        "_phlo_run_id": pa.array(["baseline"] * count, pa.string()),
        "date": dates,
    }
    columns = []
    for field in schema:
        if field.name in derived:
            columns.append(derived[field.name])
            continue
        key = SOURCE_KEYS.get(field.name, field.name)
        values = [e.get(key) for e in entries]
        if field.name == "sgv":
            values = [_whole_number(v) for v in values]
        columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _plain_catalog(root: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    root.mkdir(parents=True, exist_ok=True)
    (root / "warehouse").mkdir(exist_ok=True)
    return SqlCatalog("plain", uri=f"sqlite:///{root}/catalog.sqlite", warehouse=f"file://{root}/warehouse")


def baseline_backfill(conn: Connection, root: str, url: str, since_ms: int, until_ms: int) -> None:
    """httpx fetch + json + pyarrow table + pyiceberg append per window, into a fresh table."""
    catalog = _plain_catalog(Path(root))
    catalog.create_namespace("raw")
    table = catalog.create_table(
        GLUCOSE_ENTRIES.name, schema=GLUCOSE_ENTRIES.schema, partition_spec=GLUCOSE_ENTRIES.partition_spec
    )
    rss_before = current_rss_mb()
    watch = Stopwatch()
    fetched = 0
    with httpx.Client(timeout=30.0) as client:
        for window in plan_windows(since_ms, until_ms, WINDOW_DAYS):
            with watch.phase("fetch"):
                entries = fetch_plain(client, url, window)
            with watch.phase("build"):
                rows = plain_table(entries, datetime.now(UTC))
            with watch.phase("append"):
                table.append(rows)
            fetched += len(entries)
    conn.send(
        {
            "steps": watch.seconds,
            "fetched": fetched,
            "merged": fetched,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def baseline_hourly(conn: Connection, root: str, url: str) -> None:
    """Per "run": fetch from the newest stored date minus the lookback, build, append."""
    catalog = _plain_catalog(Path(root))
    table = catalog.load_table(GLUCOSE_ENTRIES.name)
    newest = pc.max(table.scan(selected_fields=("date",)).to_arrow()["date"]).as_py()
    with httpx.Client(timeout=30.0) as client:
        conn.send("ready")
        while conn.recv() == "run":
            watch = Stopwatch()
            now_ms = int(time.time() * 1000)
            window = FetchWindow(newest + 1 - LOOKBACK_MS, now_ms + HOUR_MS)
            with watch.phase("fetch"):
                entries = fetch_plain(client, url, window)
            with watch.phase("build"):
                rows = plain_table(entries, datetime.now(UTC))
            with watch.phase("append"):
                if rows.num_rows:
                    table.append(rows)
            if rows.num_rows:
                newest = max(newest, pc.max(rows["date"]).as_py())
            conn.send({"steps": watch.seconds, "fetched": len(entries), "peak_rss_mb": peak_rss_mb()})


# -- the parent: simulator, alternation, report ---------------------------------------------------


def in_child(ctx: Any, target: Callable[..., None], *args: Any) -> tuple[dict[str, Any], float]:
    """Run `target(conn, *args)` in a fresh interpreter; its one message and the seconds to it from spawn."""
    parent, child = ctx.Pipe()
    started = time.perf_counter()
    process = ctx.Process(target=target, args=(child, *args))
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"{target.__name__} died (exit code {process.exitcode})") from None
    elapsed = time.perf_counter() - started
    process.join()
    return result, elapsed


class Worker:
    """A child process that answers each "run" with one message."""

    def __init__(self, ctx: Any, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child, *args))
        self.process.start()
        child.close()
        if self.conn.recv() != "ready":
            raise SystemExit(f"{target.__name__} did not start")

    def run(self) -> dict[str, Any]:
        self.conn.send("run")
        result: dict[str, Any] = self.conn.recv()
        return result

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join()


def ingest_s(steps: dict[str, float]) -> float:
    return sum(steps.get(name, 0.0) for name in INGEST_STEPS)


def baseline_s(steps: dict[str, float]) -> float:
    return sum(steps.get(name, 0.0) for name in ("fetch", "build", "append"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 days instead of 365, 2 repeats")
    parser.add_argument("--days", type=int, help="days of history to backfill (default 365)")
    parser.add_argument("--repeats", type=int, help="backfill repeats per contender (default 3)")
    parser.add_argument("--hours", type=int, default=5, help="warm hourly runs to time (default 5)")
    args = parser.parse_args()
    days = args.days or (90 if args.quick else 365)
    repeats = args.repeats or (2 if args.quick else 3)
    hours = max(1, args.hours)

    ctx = mp.get_context("spawn")
    # One untimed warm-up hour, then `hours` timed ones: the last must still be in the past.
    clock = SimulatorClock(start=time.time(), behind_s=(hours + 2) * 3600)
    zone = ZoneInfo(TIMEZONE)
    since_day = datetime.now(zone).date() - timedelta(days=days)
    since_ms = int(datetime.combine(since_day, datetime.min.time(), zone).timestamp() * 1000)

    with (
        tempfile.TemporaryDirectory(prefix="phlo-bench-ingest-") as tmp,
        SimulatorServer(GlucoseSimulator(seed=SEED, tz=TIMEZONE, clock=clock)) as server,
    ):
        print(
            f"simulator {server.url}, tz {TIMEZONE}, clock {(hours + 2)} h behind real time; "
            f"backfill --since {since_day} ({days} days), {repeats} repeat(s), {hours} hourly run(s)",
            flush=True,
        )
        until_ms = int(time.time() * 1000)
        # The simulator generates each day once and caches it: warm it so no contender pays for that.
        with httpx.Client(timeout=60.0) as client:
            for window in plan_windows(since_ms - DAY_MS, until_ms, WINDOW_DAYS):
                fetch_plain(client, server.url, window)

        runs: dict[str, list[dict[str, Any]]] = {"engine": [], "pieces": [], "baseline": []}
        spawn_s: list[float] = []
        contenders: list[tuple[str, Callable[[int], tuple[dict[str, Any], float]]]] = [
            (
                "engine",
                lambda r: in_child(ctx, engine_backfill, f"{tmp}/engine-{r}", server.url, str(since_day)),
            ),
            (
                "pieces",
                lambda r: in_child(ctx, pieces_backfill, f"{tmp}/pieces-{r}", server.url, since_ms, until_ms),
            ),
            (
                "baseline",
                lambda r: in_child(
                    ctx, baseline_backfill, f"{tmp}/plain-{r}", server.url, since_ms, until_ms
                ),
            ),
        ]
        for r in range(repeats):
            order = contenders[r % 3 :] + contenders[: r % 3]
            for name, start in order:
                result, elapsed = start(r)
                runs[name].append(result)
                if name == "engine":
                    spawn_s.append(elapsed)
            e, p, b = runs["engine"][-1], runs["pieces"][-1], runs["baseline"][-1]
            print(
                f"repeat {r + 1}: engine run {e['wall_s']:.2f} s (ingest {ingest_s(e['steps']):.2f} s, "
                f"{e['status']}), pieces {ingest_s(p['steps']):.2f} s, baseline {baseline_s(b['steps']):.2f} s; "
                f"fetched {e['fetched']:,} / {p['fetched']:,} / {b['fetched']:,}",
                flush=True,
            )

        engine_worker = Worker(ctx, engine_hourly, f"{tmp}/engine-{repeats - 1}", server.url)
        baseline_worker = Worker(ctx, baseline_hourly, f"{tmp}/plain-{repeats - 1}", server.url)
        hourly: dict[str, list[dict[str, Any]]] = {"engine": [], "baseline": []}
        cold: dict[str, dict[str, Any]] = {}
        try:
            for hour in range(hours + 1):
                clock.advance(3600)
                pair = [("engine", engine_worker), ("baseline", baseline_worker)]
                for name, worker in pair if hour % 2 == 0 else pair[::-1]:
                    result = worker.run()
                    if hour == 0:
                        cold[name] = result
                    else:
                        hourly[name].append(result)
        finally:
            engine_worker.stop()
            baseline_worker.stop()

    report(days, repeats, runs, spawn_s, cold, hourly)


def report(
    days: int,
    repeats: int,
    runs: dict[str, list[dict[str, Any]]],
    spawn_s: list[float],
    cold: dict[str, dict[str, Any]],
    hourly: dict[str, list[dict[str, Any]]],
) -> None:
    engine, pieces, base = runs["engine"], runs["pieces"], runs["baseline"]
    h_engine, h_base = hourly["engine"], hourly["baseline"]

    def med(rows: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float]) -> float:
        return median([pick(row) for row in rows])

    def phase(rows: list[dict[str, Any]], *names: str) -> float:
        return med(rows, lambda row: sum(row["steps"].get(name, 0.0) for name in names))

    backfill_s = med(engine, lambda r: r["wall_s"])
    ingest = {
        "engine": phase(engine, *INGEST_STEPS),
        "pieces": phase(pieces, *INGEST_STEPS),
        "baseline": phase(base, "fetch", "build", "append"),
    }
    fetch = {
        "engine": phase(engine, "fetch"),
        "pieces": phase(pieces, "fetch"),
        "baseline": phase(base, "fetch"),
    }
    merge = {
        "engine": phase(engine, "merge"),
        "pieces": phase(pieces, "merge"),
        "baseline": phase(base, "append"),
    }
    merged = engine[-1]["merged"]
    peak = max(r["peak_rss_mb"] for r in engine)
    hourly_run = med(h_engine, lambda r: r["wall_s"])
    hourly_ingest = phase(h_engine, *INGEST_STEPS)
    hourly_rest = med(h_engine, lambda r: r["wall_s"] - ingest_s(r["steps"]))
    hourly_base = phase(h_base, "fetch", "build", "append")

    def seconds(value: float | None, digits: int = 2) -> str:
        return "" if value is None else f"{value:.{digits}f} s"

    def ratio(ours: float, theirs: float) -> float:
        return ours / theirs if theirs else float("nan")

    rows: list[tuple[str, ...]] = []

    def line(
        label: str,
        ours: float | None,
        alone: float | None = None,
        plain: float | None = None,
        target: str = "",
        digits: int = 2,
    ) -> None:
        shown = f"{ratio(ours, plain):.2f}" if ours is not None and plain is not None else ""
        rows.append(
            (label, seconds(ours, digits), seconds(alone, digits), seconds(plain, digits), shown, target)
        )

    line(f"backfill {days} d: the whole run, every step", backfill_s, target="< 30 s")
    line("  the same as a fresh process (start-up, imports)", median(spawn_s))
    line("  dlt import (once per process, outside the fetches)", med(engine, lambda r: r["dlt_import_s"]))
    line("  ingest: fetch + validate + merge", ingest["engine"], ingest["pieces"], ingest["baseline"])
    line(
        "    fetch: dlt rest_api | httpx + json",
        fetch["engine"],
        fetch["pieces"],
        fetch["baseline"],
        "ratio <= 2",
    )
    line(
        "    validate: pandera | pyarrow table build",
        phase(engine, "validate"),
        phase(pieces, "validate"),
        phase(base, "build"),
    )
    line("    merge: Lake.merge | pyiceberg append", merge["engine"], merge["pieces"], merge["baseline"])
    rows.append(
        ("    merge rows/s", *(f"{merged / merge[k]:,.0f}" for k in ("engine", "pieces", "baseline")), "", "")
    )
    for name in other_steps(engine):
        line(f"  {name}", phase(engine, name))
    rows.append(
        (
            "  peak RSS of the process",
            *(f"{max(r['peak_rss_mb'] for r in rs):.0f} MB" for rs in (engine, pieces, base)),
            "",
            "< 500 MB",
        )
    )
    rows.append(
        (
            "    of which before the timed work (imports, setup)",
            *(f"{med(rs, lambda r: r['rss_before_mb']):.0f} MB" for rs in (engine, pieces, base)),
            "",
            "",
        )
    )
    line(f"hourly run on top of the {days} days (warm process)", hourly_run, digits=3)
    line("  ingest: fetch + validate + merge", hourly_ingest, plain=hourly_base, target="< 1 s", digits=3)
    line("    fetch", phase(h_engine, "fetch"), plain=phase(h_base, "fetch"), digits=3)
    line("    validate | table build", phase(h_engine, "validate"), plain=phase(h_base, "build"), digits=3)
    line("    merge | append", phase(h_engine, "merge"), plain=phase(h_base, "append"), digits=3)
    line("  the rest: the steps below and the run store's bookkeeping", hourly_rest, digits=3)
    for name in other_steps(h_engine):
        line(f"    {name}", phase(h_engine, name), digits=3)
    line(
        "  first hourly run of a fresh process",
        cold["engine"]["wall_s"],
        plain=baseline_s(cold["baseline"]["steps"]),
        digits=3,
    )

    print()
    print(
        f"medians of {repeats} backfill repeat(s) and {len(h_engine)} warm hourly run(s); "
        "eng/base = engine time / baseline time"
    )
    print_table(("figure", "engine", "pieces", "baseline", "eng/base", "target"), rows)
    agree = all(r["fetched"] == engine[0]["fetched"] for r in engine + pieces + base)
    statuses = sorted({r["status"] for r in engine + h_engine})
    print(
        f"entries fetched: {engine[0]['fetched']:,}, the same for every contender: {agree}; "
        f"engine run statuses: {', '.join(statuses)}"
    )

    figures = {
        "days": days,
        f"backfill_{days}d_s": round(backfill_s, 3),
        "backfill_process_s": round(median(spawn_s), 3),
        "backfill_ingest_s": round(ingest["engine"], 3),
        "backfill_ingest_pieces_s": round(ingest["pieces"], 3),
        "baseline_ingest_s": round(ingest["baseline"], 3),
        "backfill_fetch_s": round(fetch["engine"], 3),
        "baseline_fetch_s": round(fetch["baseline"], 3),
        "backfill_merge_s": round(merge["engine"], 3),
        "baseline_append_s": round(merge["baseline"], 3),
        "merge_rows_per_s": round(merged / merge["engine"]),
        "baseline_append_rows_per_s": round(merged / merge["baseline"]),
        "peak_rss_mb": round(peak, 1),
        "hourly_run_s": round(hourly_run, 4),
        "hourly_ingest_s": round(hourly_ingest, 4),
        "hourly_rest_s": round(hourly_rest, 4),
        "hourly_baseline_ingest_s": round(hourly_base, 4),
        "ratio_vs_httpx_baseline": round(ratio(ingest["engine"], ingest["baseline"]), 3),
        "ratio_fetch_vs_httpx": round(ratio(fetch["engine"], fetch["baseline"]), 3),
        "ratio_hourly_ingest_vs_baseline": round(ratio(hourly_ingest, hourly_base), 3),
        "rows": engine[0]["fetched"],
        "rows_agree": agree,
        "targets": TARGETS,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
