"""Benchmark of the maintenance job after ~300 hourly runs: prints files, bytes, seconds and merge times."""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.ingest.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE
from engine.lake.maintenance import run_maintenance
from engine.lake.store import Lake

FIVE_MINUTES = 300
HOURLY_RUNS = 300
MEASURED = 20
YEAR_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
TABLES = (GLUCOSE_ENTRIES.name, GLUCOSE_QUARANTINE.name)


def readings(start: dt.datetime, count: int, seed: int) -> pa.Table:
    """`count` five-minute readings from `start`, typed as GLUCOSE_ENTRIES.arrow_schema."""
    rng = np.random.default_rng(seed)
    seconds = int(start.timestamp()) + np.arange(count, dtype=np.int64) * FIVE_MINUTES
    moments = seconds.astype("datetime64[s]")
    nulls = {field.name: pa.nulls(count, field.type) for field in GLUCOSE_ENTRIES.arrow_schema}
    columns = {
        **nulls,
        "_id": pa.array([f"{s:08x}a1b2c3d4e5{s & 0xFFFFFF:06x}" for s in seconds.tolist()], pa.string()),
        "type": pa.array(["sgv"] * count, pa.string()),
        "date": pa.array(seconds * 1000, pa.int64()),
        "sgv": pa.array(rng.integers(40, 400, count, dtype=np.int32)),
        "reading_ts": pa.array(moments.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "reading_month": pa.array(np.datetime_as_string(moments.astype("datetime64[M]"))),
        "_phlo_ingested_at": pa.array(
            np.full(count, np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "us")),
            pa.timestamp("us", tz="UTC"),
        ),
        "_phlo_run_id": pa.array([f"bench-{seed}"] * count, pa.string()),
    }
    return pa.table(columns, schema=GLUCOSE_ENTRIES.arrow_schema)


def quarantined(hour: int) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "run_id": f"bench-{hour}",
                "check": "sgv_range",
                "severity": "error",
                "reason": "sgv out of range",
                "payload": '{"sgv": 900}',
                "source": "bench",
                "quarantined_at": dt.datetime.now(dt.UTC),
            }
        ],
        schema=GLUCOSE_QUARANTINE.arrow_schema,
    )


def hourly_runs(lake: Lake, first_hour: int, count: int) -> list[float]:
    """Hourly runs that merge 12 readings, quarantine a row and promote; the merge seconds of each."""
    seconds = []
    for hour in range(first_hour, first_hour + count):
        batch = readings(YEAR_START + dt.timedelta(days=365, hours=hour), 12, seed=hour)
        seconds.append(lake.merge(GLUCOSE_ENTRIES, batch).seconds)
        lake.append(GLUCOSE_QUARANTINE, quarantined(hour))
        for table in TABLES:
            dev = lake.snapshot_id(table, "dev")
            assert dev is not None
            lake.set_branch(table, "main", dev)
    return seconds


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:6.0f} ms, max {max(values) * 1000:6.0f} ms"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="phlo-bench-") as home:
        lake = Lake(Path(home) / "lake")
        for tdef in (GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE):
            lake.ensure_table(tdef)
        lake.merge(GLUCOSE_ENTRIES, readings(YEAR_START, 365 * 288, seed=0))
        started = time.perf_counter()
        merges = hourly_runs(lake, 0, HOURLY_RUNS)
        print(f"{HOURLY_RUNS} hourly runs after a year of readings: {time.perf_counter() - started:.1f} s")
        print(f"  hourly merge, runs 1-{MEASURED}:{'':<14} {ms(merges[:MEASURED])}")
        print(
            f"  hourly merge, runs {HOURLY_RUNS - MEASURED + 1}-{HOURLY_RUNS}:{'':<12} {ms(merges[-MEASURED:])}"
        )

        # Every snapshot is minutes old here, so nothing would be old enough with the defaults.
        maintain(lake, "maintenance")
        after = hourly_runs(lake, HOURLY_RUNS, MEASURED)
        print(f"  hourly merge, {MEASURED} runs after maintenance:{'':<1} {ms(after)}")
        # The next week's run expires the snapshot dev had before compaction, and its small files.
        maintain(lake, "maintenance again, after those runs")


def maintain(lake: Lake, label: str) -> None:
    result = run_maintenance(lake, TABLES, protected_snapshots=set(), keep_days=0, orphan_min_age_s=0)
    print(f"{label}: {result.seconds:.2f} s")
    for t in result.tables:
        print(
            f"  {t.table:<24} snapshots {t.snapshots_before:>4} -> {t.snapshots_after:>3}"
            f"   files {t.files_before:>5} -> {t.files_after:>4}"
            f"   MB {t.bytes_before / 1e6:7.2f} -> {t.bytes_after / 1e6:6.2f}"
            f"   dev data files {t.dev_files_before:>4} -> {t.dev_files_after:>2}"
            f"   {'main moved' if t.main_moved_to else 'main kept'}   {t.seconds:.2f} s"
        )


if __name__ == "__main__":
    main()
