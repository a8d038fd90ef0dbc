"""Benchmark of Lake.merge on synthetic 5-minute readings: prints seconds and rows/s, asserts nothing."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from engine.ingest.tables import GLUCOSE_ENTRIES
from engine.lake.store import Lake, MergeResult

FIVE_MINUTES = 300
HOURLY_COMMITS = 150


def readings(start: dt.datetime, count: int, step_seconds: int = FIVE_MINUTES, seed: int = 0) -> pa.Table:
    """`count` readings from `start`, `step_seconds` apart, built column by column with numpy."""
    rng = np.random.default_rng(seed)
    seconds = int(start.timestamp()) + np.arange(count, dtype=np.int64) * step_seconds
    moments = seconds.astype("datetime64[s]")
    # Nightscout ids are Mongo ObjectIds: 8 hex digits of time, then 16 more.
    ids = [f"{s:08x}a1b2c3d4e5{s & 0xFFFFFF:06x}" for s in seconds.tolist()]
    nulls = {field.name: pa.nulls(count, field.type) for field in GLUCOSE_ENTRIES.arrow_schema}
    columns = {
        **nulls,
        "_id": pa.array(ids, pa.string()),
        "type": pa.array(["sgv"] * count, pa.string()),
        "date": pa.array(seconds * 1000, pa.int64()),
        "sgv": pa.array(rng.integers(40, 400, count, dtype=np.int32)),
        "direction": pa.array(["Flat"] * count, pa.string()),
        "trend": pa.array(np.full(count, 4, dtype=np.int32)),
        "noise": pa.array(np.ones(count, dtype=np.int32)),
        "filtered": pa.array(rng.normal(150_000, 20_000, count)),
        "unfiltered": pa.array(rng.normal(150_000, 20_000, count)),
        "device": pa.array(["xDrip-DexcomG6"] * count, pa.string()),
        "reading_ts": pa.array(moments.astype("datetime64[us]"), pa.timestamp("us", tz="UTC")),
        "reading_month": pa.array(np.datetime_as_string(moments.astype("datetime64[M]"))),
        "_phlo_ingested_at": pa.array(
            np.full(count, np.datetime64(dt.datetime.now(dt.UTC).replace(tzinfo=None), "us")),
            pa.timestamp("us", tz="UTC"),
        ),
        "_phlo_run_id": pa.array(["bench"] * count, pa.string()),
    }
    return pa.table(columns, schema=GLUCOSE_ENTRIES.arrow_schema)


def slots(start: dt.datetime, end: dt.datetime) -> int:
    return int((end - start).total_seconds()) // FIVE_MINUTES


def report(label: str, result: MergeResult) -> None:
    rate = result.rows_in / result.seconds if result.seconds else float("inf")
    print(
        f"{label:<58} {result.seconds:7.2f} s {rate:11,.0f} rows/s  "
        f"(+{result.rows_inserted:,} ~{result.rows_updated:,} ={result.rows_unchanged:,}, "
        f"{len(result.partitions)} partition(s), "
        f"{'commit' if result.snapshot_id else 'no commit'})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="phlo-bench-") as home:
        year_start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        year_end = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        last_hour = year_end - dt.timedelta(hours=1)
        lake = Lake(Path(home) / "year")
        lake.ensure_table(GLUCOSE_ENTRIES)
        year = readings(year_start, slots(year_start, last_hour), seed=1)
        report(
            f"a year ({year.num_rows:,} rows, 12 months) into an empty table",
            lake.merge(GLUCOSE_ENTRIES, year),
        )
        hour = readings(last_hour, 12, seed=2)
        report("one hourly batch (12 rows) into that year", lake.merge(GLUCOSE_ENTRIES, hour))
        report("the same hourly batch again", lake.merge(GLUCOSE_ENTRIES, hour))
        # Every commit keeps its snapshots in the table metadata, which pyiceberg deep-copies
        # many times per commit: hourly merges slow down until old snapshots are expired.
        next_hour = year_end
        for _ in range(HOURLY_COMMITS):
            lake.merge(GLUCOSE_ENTRIES, readings(next_hour, 12, seed=7))
            next_hour += dt.timedelta(hours=1)
        snapshots = len(lake.history(GLUCOSE_ENTRIES.name, "dev"))
        report(
            f"one hourly batch after {HOURLY_COMMITS} more ({snapshots} snapshots)",
            lake.merge(GLUCOSE_ENTRIES, readings(next_hour, 12, seed=8)),
        )
        started = time.perf_counter()
        lake.set_branch(GLUCOSE_ENTRIES.name, "main", lake.snapshot_id(GLUCOSE_ENTRIES.name, "dev") or 0)
        expiry = lake.expire_snapshots(GLUCOSE_ENTRIES.name, older_than=dt.datetime.now(dt.UTC))
        print(
            f"{'promote, then expire all older snapshots':<58} {time.perf_counter() - started:7.2f} s "
            f"({expiry.snapshots_expired} snapshots, {expiry.files_deleted} files, "
            f"{expiry.bytes_freed / 1e6:.0f} MB)"
        )
        report(
            "one hourly batch after expiry",
            lake.merge(GLUCOSE_ENTRIES, readings(next_hour + dt.timedelta(hours=1), 12, seed=9)),
        )

        decade_start = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
        decade_end = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        lake = Lake(Path(home) / "decade")
        lake.ensure_table(GLUCOSE_ENTRIES)
        decade = readings(decade_start, slots(decade_start, decade_end), seed=3)
        report(
            f"ten years ({decade.num_rows:,} rows) into an empty table", lake.merge(GLUCOSE_ENTRIES, decade)
        )
        # 10,000 readings in January 2025 (a new month): every 267 s instead of every 300 s.
        new_month = readings(decade_end, 10_000, step_seconds=267, seed=4)
        report("10k new rows (one new month) into ~1M rows", lake.merge(GLUCOSE_ENTRIES, new_month))
        june = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
        changed = readings(june, slots(june, dt.datetime(2020, 7, 1, tzinfo=dt.UTC)), seed=5)
        report("a stored month re-sent with new values into ~1M rows", lake.merge(GLUCOSE_ENTRIES, changed))
        hour = readings(dt.datetime(2025, 1, 31, 23, tzinfo=dt.UTC), 12, seed=6)
        report("one hourly batch (12 rows) into ~1M rows", lake.merge(GLUCOSE_ENTRIES, hour))
        started = time.perf_counter()
        files = lake.data_files(GLUCOSE_ENTRIES.name, "dev")
        print(
            f"{'planning the files of the dev snapshot':<58} {time.perf_counter() - started:7.2f} s ({len(files)} files)"
        )
        started = time.perf_counter()
        con = duckdb.connect()
        lake.register_duckdb(con, GLUCOSE_ENTRIES.name, "dev")
        (rows,) = con.sql("SELECT count(*) FROM raw.glucose_entries").fetchall()[0]
        print(
            f"{'register_duckdb, then count(*) in DuckDB':<58} {time.perf_counter() - started:7.2f} s ({rows:,} rows)"
        )


if __name__ == "__main__":
    main()
