"""Tests of engine.lake.store on a real Iceberg warehouse in tmp_path, read back through real DuckDB."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.errors import LakeError
from engine.ingest.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE
from engine.lake.housekeeping import ExpiryResult
from engine.lake.store import Lake

UTC = dt.UTC
ENTRIES = GLUCOSE_ENTRIES.name


def glucose_rows(
    start: dt.datetime,
    count: int,
    *,
    sgv: int = 120,
    run_id: str = "run-1",
    ingested_at: dt.datetime | None = None,
) -> pa.Table:
    """`count` five-minute readings from `start`, typed exactly as GLUCOSE_ENTRIES.arrow_schema.

    The `_id` is derived from the reading time (like a Mongo ObjectId), so the same time always
    gives the same key and a later call with another `sgv` produces updates of the same rows.
    """
    times = [start + dt.timedelta(minutes=5 * i) for i in range(count)]
    seconds = [int(t.timestamp()) for t in times]
    ingested = ingested_at or dt.datetime.now(UTC)
    columns = {
        "_id": [f"{s:08x}a1b2c3d4e5{s % 0xFFFFFF:06x}" for s in seconds],
        "type": ["sgv"] * count,
        "date": [s * 1000 for s in seconds],
        "date_string": [t.isoformat() for t in times],
        "sys_time": [t.isoformat() for t in times],
        "utc_offset": [0] * count,
        "sgv": [sgv + i % 40 for i in range(count)],
        "mbg": [None] * count,
        "direction": ["Flat"] * count,
        "trend": [4] * count,
        "noise": [1] * count,
        "filtered": [float(s % 1000) for s in seconds],
        "unfiltered": [float(s % 997) for s in seconds],
        "rssi": [100] * count,
        "device": ["xDrip-DexcomG6"] * count,
        "slope": [None] * count,
        "intercept": [None] * count,
        "scale": [None] * count,
        "reading_ts": times,
        "reading_month": [t.strftime("%Y-%m") for t in times],
        "_phlo_ingested_at": [ingested] * count,
        "_phlo_run_id": [run_id] * count,
        "is_valid": [None] * count,
        "identifier": [None] * count,
        "srv_modified": [None] * count,
    }
    return pa.Table.from_pydict(columns, schema=GLUCOSE_ENTRIES.arrow_schema)


def with_column(table: pa.Table, name: str, values: pa.Array | list[object]) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(
        index, table.schema.field(index), pa.array(values, table.schema.field(index).type)
    )


def duckdb_rows(lake: Lake, branch: str, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    lake.register_duckdb(con, ENTRIES, branch)
    return con.sql(sql).fetchall()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "lake")
    lake.ensure_table(GLUCOSE_ENTRIES)
    return lake


JAN = dt.datetime(2024, 1, 10, tzinfo=UTC)
JAN_END = dt.datetime(2024, 1, 31, 22, tzinfo=UTC)


# -- tables and branches ---------------------------------------------------------------------


def test_lake_touches_no_disk_until_used(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = Lake(root)
    assert not root.exists()
    lake.ensure_table(GLUCOSE_QUARANTINE)
    assert root.stat().st_mode & 0o777 == 0o700
    assert (root / "catalog.sqlite").is_file()


def test_ensure_table_is_idempotent_and_dev_starts_at_main(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ensure_table(GLUCOSE_ENTRIES)
    main = lake.snapshot_id(ENTRIES, "main")
    assert main is not None
    assert lake.snapshot_id(ENTRIES, "dev") == main
    assert [s.snapshot_id for s in lake.history(ENTRIES, "main")] == [main]

    lake.ensure_table(GLUCOSE_ENTRIES)
    other = Lake(tmp_path / "lake")
    other.ensure_table(GLUCOSE_ENTRIES)
    assert other.snapshot_id(ENTRIES, "main") == main
    assert other.snapshot_id(ENTRIES, "dev") == main
    assert len(other.history(ENTRIES, "dev")) == 1


def test_ensure_table_keeps_dev_where_it_is(lake: Lake) -> None:
    merged = lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 10))
    lake.ensure_table(GLUCOSE_ENTRIES)
    assert lake.snapshot_id(ENTRIES, "dev") == merged.snapshot_id


def test_ensure_table_from_concurrent_processes(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from engine.lake.housekeeping import ExpiryResult
        from engine.lake.store import Lake
        from engine.ingest.tables import GLUCOSE_ENTRIES
        lake = Lake(Path({str(root)!r}))
        lake.ensure_table(GLUCOSE_ENTRIES)
        print(lake.snapshot_id("{ENTRIES}", "main"), lake.snapshot_id("{ENTRIES}", "dev"))
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err.decode() for _, err in outputs]
    lake = Lake(root)
    main = lake.snapshot_id(ENTRIES, "main")
    assert lake.snapshot_id(ENTRIES, "dev") == main
    assert [s.snapshot_id for s in lake.history(ENTRIES, "main")] == [main]


def test_ensure_table_refuses_a_table_stored_with_other_columns(lake: Lake) -> None:
    with pytest.raises(LakeError, match="other columns"):
        lake.ensure_table(dataclasses.replace(GLUCOSE_QUARANTINE, name=ENTRIES))


def test_missing_table_and_branch_are_lake_errors(tmp_path: Path, lake: Lake) -> None:
    with pytest.raises(LakeError, match="does not exist"):
        Lake(tmp_path / "empty").read_arrow(ENTRIES, "main")
    assert Lake(tmp_path / "empty").snapshot_id(ENTRIES, "main") is None
    assert lake.snapshot_id(ENTRIES, "feature") is None
    with pytest.raises(LakeError, match="branch feature"):
        lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 3), branch="feature")
    assert lake.snapshot_id(ENTRIES, "feature") is None


def test_unusable_root_is_a_lake_error(tmp_path: Path) -> None:
    root = tmp_path / "not-a-directory"
    root.write_text("")
    with pytest.raises(LakeError) as raised:
        Lake(root).ensure_table(GLUCOSE_ENTRIES)
    assert raised.value.hint
    assert isinstance(raised.value.__cause__, OSError)


# -- merge -----------------------------------------------------------------------------------


def test_merge_inserts_then_rerun_commits_nothing(lake: Lake) -> None:
    batch = glucose_rows(JAN, 100)
    first = lake.merge(GLUCOSE_ENTRIES, batch)
    assert (first.rows_in, first.rows_inserted, first.rows_updated, first.rows_unchanged) == (
        100,
        100,
        0,
        0,
    )
    assert first.partitions == ("2024-01",)
    assert first.snapshot_id == lake.snapshot_id(ENTRIES, "dev")
    history = lake.history(ENTRIES, "dev")

    rerun = lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 100, run_id="run-2"))
    assert rerun.snapshot_id is None
    assert (rerun.rows_inserted, rerun.rows_updated, rerun.rows_unchanged) == (0, 0, 100)
    assert rerun.partitions == ()
    assert lake.history(ENTRIES, "dev") == history
    assert duckdb_rows(lake, "dev", "SELECT count(*), count(DISTINCT _id) FROM raw.glucose_entries") == [
        (100, 100)
    ]


def test_merge_updates_changed_rows_and_keeps_bookkeeping_of_the_rest(lake: Lake) -> None:
    first_seen = dt.datetime(2024, 2, 1, tzinfo=UTC)
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 50, run_id="run-1", ingested_at=first_seen))
    batch = glucose_rows(JAN, 50, run_id="run-2")
    batch = with_column(batch, "sgv", [300 if i < 5 else v for i, v in enumerate(batch["sgv"].to_pylist())])

    result = lake.merge(GLUCOSE_ENTRIES, batch)

    assert (result.rows_inserted, result.rows_updated, result.rows_unchanged) == (0, 5, 45)
    assert result.snapshot_id is not None
    stored = lake.read_arrow(ENTRIES, "dev").sort_by("date").to_pylist()
    assert [r["sgv"] for r in stored[:6]] == [300, 300, 300, 300, 300, 125]
    assert {r["_phlo_run_id"] for r in stored[:5]} == {"run-2"}
    assert {r["_phlo_run_id"] for r in stored[5:]} == {"run-1"}
    assert {r["_phlo_ingested_at"] for r in stored[5:]} == {first_seen}


def test_merge_last_row_per_key_in_the_batch_wins(lake: Lake) -> None:
    rows = glucose_rows(JAN, 3)
    batch = pa.concat_tables([rows, with_column(rows, "sgv", [201, 202, 203])])
    result = lake.merge(GLUCOSE_ENTRIES, batch)
    assert (result.rows_in, result.rows_inserted) == (6, 3)
    assert sorted(lake.read_arrow(ENTRIES, "dev", columns=["sgv"])["sgv"].to_pylist()) == [201, 202, 203]


def test_merge_rewrites_only_the_partitions_it_touches(lake: Lake) -> None:
    for month in (1, 2, 3, 4):
        lake.merge(GLUCOSE_ENTRIES, glucose_rows(dt.datetime(2024, month, 5, tzinfo=UTC), 200))
    before = set(lake.data_files(ENTRIES, "dev"))
    untouched = {f for f in before if "2024-03" in f or "2024-04" in f}
    assert len(untouched) == 2

    # New readings from 31 January 22:00 into 1 February: exactly two partitions change.
    result = lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN_END, 48, sgv=90))

    assert result.partitions == ("2024-01", "2024-02")
    after = set(lake.data_files(ENTRIES, "dev"))
    assert untouched <= after
    assert len(after - before) == 2
    assert len(before - after) == 2
    assert duckdb_rows(lake, "dev", "SELECT count(*), count(DISTINCT _id) FROM raw.glucose_entries") == [
        (848, 848)
    ]


def test_merge_into_dev_leaves_main_untouched(lake: Lake) -> None:
    main = lake.snapshot_id(ENTRIES, "main")
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 20))
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 20, sgv=60))
    assert lake.snapshot_id(ENTRIES, "main") == main
    assert lake.read_arrow(ENTRIES, "main").num_rows == 0
    assert lake.data_files(ENTRIES, "main") == []
    assert lake.read_arrow(ENTRIES, "dev").num_rows == 20


def test_merge_moves_a_row_whose_month_changed(lake: Lake) -> None:
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(dt.datetime(2024, 3, 5, tzinfo=UTC), 10))
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 1))
    moved = with_column(glucose_rows(JAN, 1), "reading_month", ["2024-03"])

    result = lake.merge(GLUCOSE_ENTRIES, moved)

    assert result.rows_updated == 1
    assert result.partitions == ("2024-01", "2024-03")
    assert lake.data_files(ENTRIES, "dev", "reading_month = '2024-01'") == []
    assert duckdb_rows(lake, "dev", "SELECT count(*), count(DISTINCT _id) FROM raw.glucose_entries") == [
        (11, 11)
    ]


def test_merge_snapshot_properties_are_recorded(lake: Lake) -> None:
    result = lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 5), snapshot_properties={"phlo.run-id": "run-7"})
    head = lake.history(ENTRIES, "dev")[0]
    assert head.snapshot_id == result.snapshot_id
    assert head.summary["phlo.run-id"] == "run-7"
    assert head.operation == "append"


def test_merge_needs_a_key(lake: Lake) -> None:
    with pytest.raises(LakeError, match="append"):
        lake.merge(GLUCOSE_QUARANTINE, GLUCOSE_QUARANTINE.arrow_schema.empty_table())


# -- reading through the snapshot ------------------------------------------------------------


def test_data_files_follow_the_snapshot_not_the_directory(lake: Lake, tmp_path: Path) -> None:
    for sgv in (100, 110, 120):
        lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 30, sgv=sgv))
    on_disk = sorted((tmp_path / "lake" / "warehouse").rglob("*.parquet"))
    files = lake.data_files(ENTRIES, "dev")

    assert len(files) == 1
    assert len(on_disk) == 3
    assert all(Path(f).exists() for f in files)
    globbed = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/lake/warehouse/**/*.parquet')"
    ).fetchall()
    assert globbed == [(90,)]
    assert duckdb_rows(lake, "dev", "SELECT count(*), min(sgv) FROM raw.glucose_entries") == [(30, 120)]


def test_data_files_with_a_row_filter_prune_partitions(lake: Lake) -> None:
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN_END, 48))
    assert len(lake.data_files(ENTRIES, "dev")) == 2
    february = lake.data_files(ENTRIES, "dev", "reading_month = '2024-02'")
    assert len(february) == 1
    assert "reading_month=2024-02" in february[0]


def test_register_duckdb_on_an_empty_branch_is_typed(lake: Lake) -> None:
    con = duckdb.connect()
    lake.register_duckdb(con, ENTRIES, "main")
    types = dict((row[0], row[1]) for row in con.sql("DESCRIBE raw.glucose_entries").fetchall())
    assert types["sgv"] == "INTEGER"
    assert types["reading_ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["date"] == "BIGINT"
    assert con.sql("SELECT count(*) FROM raw.glucose_entries").fetchall() == [(0,)]


def test_register_duckdb_under_another_name(lake: Lake) -> None:
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 7))
    con = duckdb.connect()
    lake.register_duckdb(con, ENTRIES, "dev", as_name="dev_raw.entries")
    lake.register_duckdb(con, ENTRIES, "main", as_name="main_entries")
    assert con.sql("SELECT count(*) FROM dev_raw.entries").fetchall() == [(7,)]
    assert con.sql("SELECT count(*) FROM main_entries").fetchall() == [(0,)]


def test_read_arrow_has_the_declared_schema_with_or_without_rows(lake: Lake) -> None:
    empty = lake.read_arrow(ENTRIES, "dev")
    assert empty.schema.field("_id").type == pa.string()
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 4))
    rows = lake.read_arrow(ENTRIES, "dev")
    assert rows.schema.field("_id").type == pa.string()
    assert rows.schema.field("reading_ts").type == pa.timestamp("us", tz="UTC")
    assert lake.read_arrow(ENTRIES, "dev", columns=["_id", "sgv"]).column_names == ["_id", "sgv"]


def test_register_duckdb_with_partitions_reads_only_those(lake: Lake) -> None:
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN_END, 48))
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(dt.datetime(2024, 3, 5, tzinfo=UTC), 10))
    con = duckdb.connect()
    lake.register_duckdb(con, ENTRIES, "dev", partitions={"2024-02", "2024-03"})
    assert con.sql(
        "SELECT reading_month, count(*) FROM raw.glucose_entries GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("2024-02", 24), ("2024-03", 10)]
    lake.register_duckdb(con, ENTRIES, "dev", partitions=set())
    assert con.sql("SELECT count(*) FROM raw.glucose_entries").fetchall() == [(0,)]


# -- models ------------------------------------------------------------------------------------

MODEL = "silver.fct_test_readings"


def model_rows(months: dict[str, int], value: float = 1.0) -> pa.Table:
    """`n` rows per month, shaped like a model's DuckDB output."""
    rows = [
        {"reading_month": month, "reading_date": dt.date(2024, int(month[5:]), 1), "value": value + i}
        for month, n in months.items()
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def model_counts(lake: Lake, branch: str = "dev") -> list[tuple[object, ...]]:
    con = duckdb.connect()
    lake.register_duckdb(con, MODEL, branch)
    return con.sql(f"SELECT reading_month, count(*) FROM {MODEL} GROUP BY 1 ORDER BY 1").fetchall()


def test_write_model_creates_the_table_with_branches_and_replaces_it(lake: Lake) -> None:
    first = lake.write_model(MODEL, model_rows({"2024-01": 3, "2024-02": 2}), partition_by="reading_month")
    assert first is not None and lake.snapshot_id(MODEL, "dev") == first
    assert lake.read_arrow(MODEL, "main").num_rows == 0
    assert len(lake.data_files(MODEL, "dev")) == 2
    assert (
        lake.write_model(MODEL, model_rows({"2024-01": 3, "2024-02": 2}), partition_by="reading_month")
        is None
    )

    lake.write_model(MODEL, model_rows({"2024-03": 1}), partition_by="reading_month")
    assert model_counts(lake) == [("2024-03", 1)]


def test_write_model_replaces_only_the_given_partitions(lake: Lake) -> None:
    lake.write_model(
        MODEL, model_rows({"2024-01": 3, "2024-02": 2, "2024-03": 4}), partition_by="reading_month"
    )
    march = lake.data_files(MODEL, "dev", "reading_month = '2024-03'")

    head = lake.write_model(
        MODEL,
        model_rows({"2024-02": 5}, value=9.0),
        partition_by="reading_month",
        partitions={"2024-01", "2024-02"},
        snapshot_properties={"phlo.run-id": "run-3"},
    )

    assert model_counts(lake) == [("2024-02", 5), ("2024-03", 4)]
    assert lake.data_files(MODEL, "dev", "reading_month = '2024-03'") == march
    assert lake.history(MODEL, "dev")[0].snapshot_id == head
    assert lake.history(MODEL, "dev")[0].summary["phlo.run-id"] == "run-3"
    with pytest.raises(LakeError, match="2024-03"):
        lake.write_model(
            MODEL, model_rows({"2024-03": 1}), partition_by="reading_month", partitions={"2024-02"}
        )
    assert model_counts(lake) == [("2024-02", 5), ("2024-03", 4)]


def test_write_model_adds_new_columns_and_nulls_missing_ones(lake: Lake) -> None:
    lake.write_model(MODEL, model_rows({"2024-01": 2}), partition_by="reading_month")
    wider = model_rows({"2024-02": 1}).append_column("flag", pa.array([True]))
    lake.write_model(MODEL, wider, partition_by="reading_month", partitions={"2024-02"})
    narrower = model_rows({"2024-03": 1}).drop_columns(["value"])
    lake.write_model(MODEL, narrower, partition_by="reading_month", partitions={"2024-03"})

    stored = lake.read_arrow(MODEL, "dev").sort_by("reading_month").to_pylist()
    assert [(r["reading_month"], r["flag"], r["value"]) for r in stored] == [
        ("2024-01", None, 1.0),
        ("2024-01", None, 2.0),
        ("2024-02", True, 1.0),
        ("2024-03", None, None),
    ]
    con = duckdb.connect()
    lake.register_duckdb(con, MODEL, "dev")
    assert con.sql(f"SELECT count(*), count(flag), count(value) FROM {MODEL}").fetchall() == [(4, 1, 3)]
    lake.register_duckdb(con, MODEL, "dev", partitions={"2024-01"})
    assert con.sql(f"SELECT count(*), count(flag) FROM {MODEL}").fetchall() == [(2, 0)]
    # main's snapshot was written before `flag` existed: as of main the column is not there.
    lake.register_duckdb(con, MODEL, "main")
    assert con.sql(f"SELECT * FROM {MODEL}").columns == ["reading_month", "reading_date", "value"]


def test_write_model_commits_one_snapshot_that_swaps_exactly_the_replaced_files(lake: Lake) -> None:
    lake.write_model(MODEL, model_rows({"2024-01": 3, "2024-02": 2}), partition_by="reading_month")
    before = lake.snapshot_id(MODEL, "dev")
    january = lake.data_files(MODEL, "dev", "reading_month = '2024-01'")
    february = lake.data_files(MODEL, "dev", "reading_month = '2024-02'")

    # Same row count, other values: the rows are compared, not only counted.
    head = lake.write_model(
        MODEL,
        model_rows({"2024-02": 2}, value=5.0),
        partition_by="reading_month",
        partitions={"2024-02"},
    )

    newest, parent = lake.history(MODEL, "dev")[:2]
    assert (newest.snapshot_id, newest.operation, parent.snapshot_id) == (head, "overwrite", before)
    assert lake.data_files(MODEL, "dev", "reading_month = '2024-01'") == january
    assert lake.data_files(MODEL, "dev", "reading_month = '2024-02'") not in ([], february)
    assert model_counts(lake) == [("2024-01", 3), ("2024-02", 2)]
    # The same rows in another order are the same content: nothing is committed.
    shuffled = model_rows({"2024-02": 2}, value=5.0).take([1, 0])
    assert lake.write_model(MODEL, shuffled, partition_by="reading_month", partitions={"2024-02"}) is None
    # An emptied partition loses its files; the other stays.
    emptied = lake.write_model(
        MODEL, model_rows({"2024-02": 1}).slice(0, 0), partition_by="reading_month", partitions={"2024-02"}
    )
    assert emptied is not None and model_counts(lake) == [("2024-01", 3)]


def test_a_lake_sees_what_another_lake_object_committed(lake: Lake, tmp_path: Path) -> None:
    lake.write_model(MODEL, model_rows({"2024-01": 3, "2024-02": 2}), partition_by="reading_month")
    assert model_counts(lake) == [("2024-01", 3), ("2024-02", 2)]
    # Another process's Lake on the same home (as the TUI is to the daemon).
    other = Lake(tmp_path / "lake")
    changed = model_rows({"2024-02": 4}, value=7.0)
    head = other.write_model(MODEL, changed, partition_by="reading_month", partitions={"2024-02"})

    assert lake.snapshot_id(MODEL, "dev") == head
    assert model_counts(lake) == [("2024-01", 3), ("2024-02", 4)]
    assert lake.write_model(MODEL, changed, partition_by="reading_month", partitions={"2024-02"}) is None


def test_pinned_tables_are_loaded_once_and_a_foreign_commit_unpins(lake: Lake, tmp_path: Path) -> None:
    lake.write_model(MODEL, model_rows({"2024-01": 1}), partition_by="reading_month")
    other = Lake(tmp_path / "lake")
    with lake.pinned():
        pinned_head = lake.snapshot_id(MODEL, "dev")
        foreign = other.write_model(MODEL, model_rows({"2024-01": 2}), partition_by="reading_month")
        # Pinned: the run's own view of the table (the lease keeps other writers away).
        assert lake.snapshot_id(MODEL, "dev") == pinned_head != foreign
        with pytest.raises(LakeError, match="another process"):
            lake.write_model(MODEL, model_rows({"2024-01": 5}), partition_by="reading_month")
        # The failed commit unpinned the table: the next load sees the foreign commit.
        assert lake.snapshot_id(MODEL, "dev") == foreign
        mine = lake.write_model(MODEL, model_rows({"2024-01": 5}), partition_by="reading_month")
    assert mine is not None and other.snapshot_id(MODEL, "dev") == mine
    assert model_counts(other) == [("2024-01", 5)]


def test_column_max_reads_the_branch_head(lake: Lake) -> None:
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 5))
    dev = lake.read_arrow(ENTRIES, "dev")
    newest = lake.column_max(ENTRIES, "dev", "reading_ts")
    assert newest == pc.max(dev["reading_ts"]).as_py() and newest.utcoffset() == dt.timedelta(0)
    assert lake.column_max(ENTRIES, "dev", "sgv") == pc.max(dev["sgv"]).as_py()
    assert lake.column_max(ENTRIES, "main", "reading_ts") is None
    with pytest.raises(LakeError, match="no column"):
        lake.column_max(ENTRIES, "dev", "nope")


def test_snapshot_files_schema_and_register_files(lake: Lake) -> None:
    lake.write_model(MODEL, model_rows({"2024-01": 2}), partition_by="reading_month")
    before = lake.snapshot_id(MODEL, "dev")
    wider = model_rows({"2024-01": 2}, value=5.0).append_column("flag", pa.array([True, False]))
    after = lake.write_model(MODEL, wider, partition_by="reading_month", partitions={"2024-01"})
    assert before is not None and after is not None

    assert list(lake.snapshot_schema(MODEL, before)) == ["reading_month", "reading_date", "value"]
    assert lake.snapshot_schema(MODEL, after)["flag"] == "boolean"
    old_files, new_files = lake.snapshot_files(MODEL, before), lake.snapshot_files(MODEL, after)
    assert len(old_files) == len(new_files) == 1 and old_files != new_files

    con = duckdb.connect()
    lake.register_files(con, "_old", MODEL, old_files, snapshot_id=before)
    lake.register_files(con, "_new", MODEL, new_files, snapshot_id=after)
    lake.register_files(con, "_none", MODEL, [], snapshot_id=after)
    assert con.sql("SELECT sum(value) FROM _old").fetchall() == [(3.0,)]
    assert con.sql("SELECT sum(value), count(flag) FROM _new").fetchall() == [(11.0, 2)]
    assert con.sql("SELECT count(*), count(flag) FROM _none").fetchall() == [(0, 0)]
    lake.register_duckdb(con, MODEL, "dev", snapshot_id=before, as_name="pinned")
    assert con.sql("SELECT sum(value) FROM pinned").fetchall() == [(3.0,)]
    with pytest.raises(LakeError, match="snapshot 42"):
        lake.snapshot_files(MODEL, 42)


def test_table_exists(lake: Lake) -> None:
    assert lake.table_exists(ENTRIES)
    assert not lake.table_exists(MODEL)


# -- strict types ----------------------------------------------------------------------------


def test_lossless_casts_are_made(lake: Lake) -> None:
    rows = glucose_rows(JAN, 3)
    batch = rows.set_column(
        rows.schema.get_field_index("sgv"), "sgv", pa.array([101, 102, 103], pa.int64())
    ).set_column(
        rows.schema.get_field_index("reading_ts"),
        "reading_ts",
        pa.array([t.isoformat() for t in rows["reading_ts"].to_pylist()], pa.string()),
    )
    assert batch.schema.field("reading_ts").type == pa.string()

    result = lake.merge(GLUCOSE_ENTRIES, batch)

    assert result.rows_inserted == 3
    stored = lake.read_arrow(ENTRIES, "dev").sort_by("date")
    assert stored["sgv"].to_pylist() == [101, 102, 103]
    assert stored["reading_ts"].to_pylist() == rows["reading_ts"].to_pylist()


def test_missing_nullable_columns_become_nulls(lake: Lake) -> None:
    batch = glucose_rows(JAN, 2).drop_columns(["slope", "device"])
    lake.merge(GLUCOSE_ENTRIES, batch)
    assert lake.read_arrow(ENTRIES, "dev", columns=["device"])["device"].null_count == 2


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("sgv", pa.array([1, 2, 2**40], pa.int64()), "cannot be stored as int32"),
        ("sgv", pa.array([1.5, 2.0, 3.0]), "cannot be stored as int32"),
        ("reading_ts", pa.array(["2024-01-10T00:00:00"] * 3), "cannot be stored as timestamp"),
        ("reading_ts", pa.array([dt.datetime(2024, 1, 10)] * 3, pa.timestamp("us")), "without time zone"),
        ("_id", pa.array(["a", None, "c"]), "null"),
    ],
)
def test_lossy_or_ambiguous_values_are_rejected(
    lake: Lake, column: str, values: pa.Array, message: str
) -> None:
    rows = glucose_rows(JAN, 3)
    batch = rows.set_column(rows.schema.get_field_index(column), column, values)
    with pytest.raises(LakeError, match=message):
        lake.merge(GLUCOSE_ENTRIES, batch)
    assert lake.read_arrow(ENTRIES, "dev").num_rows == 0


def test_unknown_and_missing_required_columns_are_rejected(lake: Lake) -> None:
    rows = glucose_rows(JAN, 2)
    with pytest.raises(LakeError, match="sensor_serial"):
        lake.merge(GLUCOSE_ENTRIES, rows.append_column("sensor_serial", pa.array(["x", "y"])))
    with pytest.raises(LakeError, match="reading_month"):
        lake.merge(GLUCOSE_ENTRIES, rows.drop_columns(["reading_month"]))


# -- append ----------------------------------------------------------------------------------


def test_append_commits_rows_and_nothing_for_an_empty_batch(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ensure_table(GLUCOSE_QUARANTINE)
    name = GLUCOSE_QUARANTINE.name
    assert lake.append(GLUCOSE_QUARANTINE, GLUCOSE_QUARANTINE.arrow_schema.empty_table()) is None
    row = {
        "run_id": "run-1",
        "entry_id": None,
        "check": "sgv_in_range",
        "column": "sgv",
        "severity": "error",
        "reason": "sgv 900 above 400",
        "payload": '{"sgv": 900}',
        "source": "simulator",
        "quarantined_at": dt.datetime(2024, 1, 1, tzinfo=UTC),
    }
    batch = pa.Table.from_pylist([row, row], schema=GLUCOSE_QUARANTINE.arrow_schema)
    first = lake.append(GLUCOSE_QUARANTINE, batch)
    second = lake.append(GLUCOSE_QUARANTINE, batch)
    assert first is not None and second is not None and first != second
    assert lake.snapshot_id(name, "dev") == second
    assert lake.read_arrow(name, "dev").num_rows == 4
    assert lake.read_arrow(name, "main").num_rows == 0


# -- branches --------------------------------------------------------------------------------


def test_set_branch_moves_main_to_the_dev_snapshot(lake: Lake) -> None:
    dev = lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 12)).snapshot_id
    assert dev is not None
    lake.set_branch(ENTRIES, "main", dev)
    assert lake.snapshot_id(ENTRIES, "main") == dev
    assert lake.read_arrow(ENTRIES, "main").num_rows == 12
    history = lake.history(ENTRIES, "main")
    lake.set_branch(ENTRIES, "main", dev)
    assert lake.history(ENTRIES, "main") == history
    with pytest.raises(LakeError, match="does not exist"):
        lake.set_branch(ENTRIES, "main", 12345)
    assert lake.snapshot_id(ENTRIES, "main") == dev


# -- expiry --------------------------------------------------------------------------------


def test_expire_snapshots_forgets_old_snapshots_and_deletes_their_files(lake: Lake, tmp_path: Path) -> None:
    for sgv in (100, 110, 120):
        lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 30, sgv=sgv))
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 30, sgv=70), branch="main")
    main_head = lake.snapshot_id(ENTRIES, "main")
    dev_history = lake.history(ENTRIES, "dev")
    partition = tmp_path / "lake" / "warehouse" / "raw" / "glucose_entries" / "data"
    # What a merge killed before its commit leaves behind, once old and while still being written.
    stray_old, stray_new = partition / "stray-old.parquet", partition / "stray-new.parquet"
    for stray in (stray_old, stray_new):
        stray.write_bytes(b"PAR1")
    cutoff = dt.datetime.now(UTC)
    os.utime(stray_old, (cutoff.timestamp() - 3600, cutoff.timestamp() - 3600))
    os.utime(stray_new, (cutoff.timestamp() + 3600, cutoff.timestamp() + 3600))

    result = lake.expire_snapshots(ENTRIES, older_than=cutoff)

    # Every dev snapshot but its head goes; the shared root was main's parent and goes too.
    assert result.snapshots_expired == len(dev_history) - 1
    assert [s.snapshot_id for s in lake.history(ENTRIES, "dev")] == [dev_history[0].snapshot_id]
    assert [s.snapshot_id for s in lake.history(ENTRIES, "main")] == [main_head]
    assert result.files_deleted > 2
    assert not stray_old.exists()
    assert stray_new.exists()
    on_disk = {str(p) for p in partition.rglob("*.parquet")}
    live = set(lake.data_files(ENTRIES, "dev")) | set(lake.data_files(ENTRIES, "main"))
    assert on_disk == live | {str(stray_new)}
    assert duckdb_rows(lake, "dev", "SELECT count(*), min(sgv) FROM raw.glucose_entries") == [(30, 120)]
    assert duckdb_rows(lake, "main", "SELECT count(*), min(sgv) FROM raw.glucose_entries") == [(30, 70)]
    assert lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 31, sgv=120)).rows_inserted == 1


def test_expire_snapshots_keeps_dev_descending_from_main(lake: Lake) -> None:
    for sgv in (100, 110, 120):
        lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 10, sgv=sgv))
    main = lake.snapshot_id(ENTRIES, "main")
    unpromoted = lake.history(ENTRIES, "dev")

    assert lake.expire_snapshots(ENTRIES, older_than=dt.datetime.now(UTC)).snapshots_expired == 0
    assert lake.history(ENTRIES, "dev") == unpromoted
    assert unpromoted[-1].snapshot_id == main

    # Once promoted, the snapshots in between are history and can go.
    lake.set_branch(ENTRIES, "main", unpromoted[0].snapshot_id)
    result = lake.expire_snapshots(ENTRIES, older_than=dt.datetime.now(UTC))
    assert result.snapshots_expired == len(unpromoted) - 1
    assert [s.snapshot_id for s in lake.history(ENTRIES, "main")] == [unpromoted[0].snapshot_id]


def test_expire_snapshots_keeps_recent_snapshots(lake: Lake) -> None:
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 5))
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(JAN, 5, sgv=60))
    before = lake.history(ENTRIES, "dev")
    result = lake.expire_snapshots(ENTRIES, older_than=dt.datetime(2020, 1, 1, tzinfo=UTC))
    assert result == ExpiryResult(0, 0, 0)
    assert lake.history(ENTRIES, "dev") == before


# -- durability ------------------------------------------------------------------------------

_WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_lake import kill_test_batches
from engine.lake.store import Lake
from engine.ingest.tables import GLUCOSE_ENTRIES

lake = Lake(Path({root!r}))
lake.ensure_table(GLUCOSE_ENTRIES)
batches = kill_test_batches()
lap = 0
while True:
    for i, batch in enumerate(batches):
        print(f"merging {{lap}}.{{i}}", flush=True)
        lake.merge(GLUCOSE_ENTRIES, batch, snapshot_properties={{"phlo.batch": str(i)}})
    lap += 1
"""


def kill_test_batches() -> list[pa.Table]:
    """Overlapping batches across month ends: later batches update rows of earlier ones."""
    batches = []
    for i in range(6):
        start = dt.datetime(2024, 1 + i % 3, 27, tzinfo=UTC) + dt.timedelta(hours=7 * i)
        batches.append(glucose_rows(start, 1500, sgv=80 + 10 * i, run_id=f"run-{i}"))
    return batches


def expected_final_rows() -> dict[str, int]:
    """sgv per _id after merging all kill_test_batches in order (the last batch per key wins)."""
    final: dict[str, int] = {}
    for batch in kill_test_batches():
        final.update(zip(batch["_id"].to_pylist(), batch["sgv"].to_pylist(), strict=True))
    return final


@pytest.mark.hardening
def test_kill_9_during_merges_leaves_a_readable_lake_without_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(tests=str(Path(__file__).parent), root=str(root)))
    moments = random.Random(9).sample([0.05 * i for i in range(1, 30)], 5)
    lake = Lake(root)
    main: int | None = None
    for delay in moments:
        writer = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stderr is not None
        line = writer.stdout.readline()
        assert line.startswith("merging"), writer.stderr.read()
        # Let it get going, then kill at a moment that falls anywhere in a merge.
        for _ in range(random.Random(delay).randint(0, 3)):
            writer.stdout.readline()
        try:
            writer.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL, writer.stderr.read()

        counts = duckdb_rows(lake, "dev", "SELECT count(*), count(DISTINCT _id) FROM raw.glucose_entries")
        assert counts[0][0] == counts[0][1]
        main = main or lake.snapshot_id(ENTRIES, "main")
        assert lake.snapshot_id(ENTRIES, "main") == main
        assert lake.read_arrow(ENTRIES, "main").num_rows == 0

    for batch in kill_test_batches():
        lake.merge(GLUCOSE_ENTRIES, batch)
    expected = expected_final_rows()
    stored = lake.read_arrow(ENTRIES, "dev", columns=["_id", "sgv"])
    assert stored.num_rows == len(expected)
    assert pc.count_distinct(stored["_id"]).as_py() == len(expected)
    assert dict(zip(stored["_id"].to_pylist(), stored["sgv"].to_pylist(), strict=True)) == expected
    assert lake.merge(GLUCOSE_ENTRIES, kill_test_batches()[-1]).snapshot_id is None


@pytest.mark.parametrize(
    ("old", "new"), [("2024-01", "2024-02"), ("2023-12", "2024-01"), ("2024-02", "2024-01")]
)
def test_a_time_keyed_merge_still_moves_a_row_from_the_next_or_previous_month(
    lake: Lake, old: str, new: str
) -> None:
    lake.merge(
        GLUCOSE_ENTRIES, with_column(glucose_rows(JAN, 3), "reading_month", [old] * 3), time_keyed=True
    )

    result = lake.merge(
        GLUCOSE_ENTRIES, with_column(glucose_rows(JAN, 1, sgv=90), "reading_month", [new]), time_keyed=True
    )

    assert result.rows_updated == 1 and result.partitions == tuple(sorted((old, new)))
    assert duckdb_rows(
        lake,
        "dev",
        "SELECT reading_month, count(*), count(DISTINCT _id) FROM raw.glucose_entries GROUP BY 1 ORDER BY 1",
    ) == sorted([(old, 2, 2), (new, 1, 1)])


def test_neighbour_months_span_the_year_end_and_refuse_other_partition_values() -> None:
    from engine.lake.merge import _neighbour_months

    assert _neighbour_months(["2024-01", "2024-12"]) == {"2023-12", "2024-02", "2024-11", "2025-01"}
    assert _neighbour_months(["2024-01", "2024-13"]) is None
    assert _neighbour_months(["2024-1"]) is None
