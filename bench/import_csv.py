"""CSV exports through `import`, file to published marts: a Dexcom Clarity export of 3 months (about 25k
rows) in a warm engine process, and of 5 years (about 500k rows) with the process's peak RSS.

    uv run --extra bench python bench/import_csv.py [--quick]      # --quick: the 3 months only

Each size runs in a fresh spawned process that first imports two days of another period (modules
loaded, tables created, PostgreSQL schema made: "warm"), then the timed file. Prints a table and one
JSON line; `figures(pg)` gives bench/run.py the same figures (`import_csv_rows_per_s` and the rest).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import TIMEZONE, peak_rss_mb

SIZES = {"3 months": 91, "5 years": 5 * 365 + 1}


def _worker(conn: Connection, home: str, dsn: str, warm: str, timed: str) -> None:
    os.environ.update(
        PHLO_HOME=home,
        PHLO_POSTGRES_DSN=dsn,
        PHLO_TIMEZONE=TIMEZONE,
        PHLO_MANAGE_POSTGRES="false",
        RUNTIME__DLTHUB_TELEMETRY="false",
    )
    from engine.api.facade import Engine
    from engine.config import load_settings

    with Engine(load_settings()) as engine:
        engine.import_file(Path(warm))
        started = time.perf_counter()
        run = engine.import_file(Path(timed))
        wall = time.perf_counter() - started
        steps: dict[str, float] = {}
        for step in run.steps:
            steps[step.name] = steps.get(step.name, 0.0) + (step.seconds or 0.0)
        conn.send(
            {
                "status": run.status.value,
                "wall_s": wall,
                "lines": run.summary.get("lines"),
                "stored": run.summary.get("stored"),
                "publish": run.summary.get("publish"),
                "steps": steps,
                "peak_rss_mb": peak_rss_mb(),
            }
        )


def measure(days: int, tmp: Path, dsn: str) -> dict[str, Any]:
    """One fresh process: warm up on two days, then import `days` days of Clarity export to published marts."""
    from engine.sim.export import write_export

    until = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    timed = write_export("clarity", tmp / f"clarity-{days}d.csv", days=days, until=until, tz=TIMEZONE)
    warm = write_export(
        "clarity", tmp / "warm.csv", days=2, until=until - timedelta(days=days + 30), tz=TIMEZONE
    )
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(
        target=_worker, args=(child, str(tmp / f"home-{days}"), dsn, str(warm.path), str(timed.path))
    )
    process.start()
    result: dict[str, Any] = parent.recv()
    process.join()
    result["rows_per_s"] = timed.lines / result["wall_s"]
    return result


def figures(pg: Any, *, five_years: bool = True) -> dict[str, Any]:
    """The figures, for bench/run.py: `pg` is its tests.pgserver.PgServer (a database is made per size)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="phlo-bench-csv-") as name:
        for label, days in SIZES.items():
            if label == "5 years" and not five_years:
                continue
            result = measure(days, Path(name), pg.create_database(f"csv{days}"))
            key = "3mo" if days < 365 else "5y"
            out[f"import_csv_{key}_s"] = round(result["wall_s"], 2)
            out[f"import_csv_{key}_lines"] = result["lines"]
            out[f"import_csv_{key}_peak_rss_mb"] = round(result["peak_rss_mb"])
            out[f"import_csv_{key}_steps"] = {k: round(v, 2) for k, v in result["steps"].items()}
            print(
                f"clarity {label}: {result['lines']} lines, {result['status']}, {result['wall_s']:.2f} s "
                f"({result['rows_per_s']:.0f} rows/s), peak RSS {result['peak_rss_mb']:.0f} MB, publish {result['publish']}",
                flush=True,
            )
            if key == "3mo":
                out["import_csv_rows_per_s"] = round(result["rows_per_s"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 3 months only")
    args = parser.parse_args(argv)
    from tests.pgserver import PgServer, server_bindir

    bindir = server_bindir()
    if bindir is None:
        raise SystemExit("bench/import_csv.py needs PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    pg = PgServer(bindir).start()
    try:
        print(json.dumps(figures(pg, five_years=not args.quick)))
    finally:
        pg.cleanup()


if __name__ == "__main__":
    main()
