"""Tests of engine.lake.maintenance on a real Iceberg warehouse in tmp_path, read back through real DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import engine.lake.housekeeping as housekeeping_module
from engine.errors import LakeError
from engine.ingest.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE
from engine.lake.maintenance import MaintenanceResult, TableMaintenance, run_maintenance, snapshots_in_use
from engine.lake.promotion import plan_moves, promote
from engine.lake.store import Lake
from engine.runs.store import RunStore

UTC = dt.UTC
ENTRIES = GLUCOSE_ENTRIES.name
QUARANTINE = GLUCOSE_QUARANTINE.name
DAILY = "gold.fct_daily_glucose"
OVERVIEW = "marts.mrt_overview"
TABLES = (ENTRIES, QUARANTINE, DAILY, OVERVIEW)
START = dt.datetime(2024, 1, 30, 12, tzinfo=UTC)
HOURS = 50
PROMOTED_AT_HOUR = 30


def glucose_rows(start: dt.datetime, count: int, *, sgv: int = 120) -> pa.Table:
    """`count` five-minute readings from `start`, typed exactly as GLUCOSE_ENTRIES.arrow_schema."""
    times = [start + dt.timedelta(minutes=5 * i) for i in range(count)]
    seconds = [int(t.timestamp()) for t in times]
    nulls = [None] * count
    columns = {
        "_id": [f"{s:08x}a1b2c3d4e5{s % 0xFFFFFF:06x}" for s in seconds],
        "type": ["sgv"] * count,
        "date": [s * 1000 for s in seconds],
        "date_string": [t.isoformat() for t in times],
        "sys_time": [t.isoformat() for t in times],
        "utc_offset": [0] * count,
        "sgv": [sgv + (s // 300) % 40 for s in seconds],
        "mbg": nulls,
        "direction": ["Flat"] * count,
        "trend": [4] * count,
        "noise": [1] * count,
        "filtered": [float(s % 1000) for s in seconds],
        "unfiltered": [float(s % 997) for s in seconds],
        "rssi": [100] * count,
        "device": ["xDrip-DexcomG6"] * count,
        "slope": nulls,
        "intercept": nulls,
        "scale": nulls,
        "reading_ts": times,
        "reading_month": [t.strftime("%Y-%m") for t in times],
        "_phlo_ingested_at": [dt.datetime.now(UTC)] * count,
        "_phlo_run_id": [f"run-{start:%d%H}"] * count,
        "is_valid": nulls,
        "identifier": nulls,
        "srv_modified": nulls,
    }
    return pa.Table.from_pydict(columns, schema=GLUCOSE_ENTRIES.arrow_schema)


def quarantine_rows(hour: int) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "run_id": [f"run-{hour}"] * 2,
            "entry_id": [f"bad-{hour}-a", None],
            "check": ["sgv_range", "has_id"],
            "column": ["sgv", None],
            "severity": ["error"] * 2,
            "reason": ["sgv 900 out of range", "no _id"],
            "payload": ['{"sgv": 900}', "{}"],
            "source": ["http://nightscout.local/api/v1/entries/sgv.json"] * 2,
            "quarantined_at": [START + dt.timedelta(hours=hour)] * 2,
        },
        schema=GLUCOSE_QUARANTINE.arrow_schema,
    )


def build_lake(root: Path, store: RunStore) -> None:
    """Hourly runs: a merge of 12 readings, two quarantined rows, and every 10 hours the models.

    Main is promoted once, at hour PROMOTED_AT_HOUR; later hours stay unpromoted on dev.
    """
    lake = Lake(root)
    lake.ensure_table(GLUCOSE_ENTRIES)
    lake.ensure_table(GLUCOSE_QUARANTINE)
    for hour in range(HOURS):
        lake.merge(GLUCOSE_ENTRIES, glucose_rows(START + dt.timedelta(hours=hour), 12))
        lake.append(GLUCOSE_QUARANTINE, quarantine_rows(hour))
        if hour % 10 == 9:
            daily = duckdb_query(
                lake,
                "dev",
                "SELECT strftime(reading_ts AT TIME ZONE 'UTC', '%Y-%m-%d') AS day, count(*) AS readings, "
                "avg(sgv) AS mean_sgv FROM raw.glucose_entries GROUP BY day",
            )
            lake.write_model(DAILY, daily, partition_by="day", partitions=daily["day"].to_pylist())
            overview = duckdb_query(lake, "dev", "SELECT count(*) AS readings FROM raw.glucose_entries")
            lake.write_model(OVERVIEW, overview)
        if hour == PROMOTED_AT_HOUR:
            promote(lake, store, None, TABLES)


def duckdb_query(lake: Lake, branch: str, sql: str) -> pa.Table:
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        lake.register_duckdb(con, ENTRIES, branch)
        return con.sql(sql).to_arrow_table()


def content(lake: Lake, table: str, branch: str, snapshot_id: int | None = None) -> list[tuple[object, ...]]:
    """Every row of the branch (or snapshot), sorted, read through DuckDB as the app reads it."""
    with duckdb.connect() as con:
        lake.register_duckdb(con, table, branch, as_name="t", snapshot_id=snapshot_id)
        return con.sql("SELECT * FROM t ORDER BY ALL").fetchall()


def everything(lake: Lake) -> dict[tuple[str, str], list[tuple[object, ...]]]:
    return {(t, b): content(lake, t, b) for t in TABLES for b in ("dev", "main")}


def files_on_disk(root: Path) -> set[Path]:
    return {p for p in (root / "warehouse").rglob("*") if p.is_file()}


def assert_every_snapshot_readable(lake: Lake) -> None:
    """Every snapshot any table keeps plans (its manifest list and manifests exist) and its data
    files exist; the branch heads are read in full by `everything`."""
    for table in TABLES:
        for snapshot in lake.snapshots(table):
            files = lake.snapshot_files(table, snapshot.snapshot_id)
            assert all(os.path.exists(f) for f in files), (table, snapshot)


@dataclass(frozen=True)
class Home:
    root: Path
    store: RunStore

    @property
    def lake(self) -> Lake:
        return Lake(self.root / "lake")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The built lake, and a copy of it to restore in place (Iceberg paths are absolute)."""
    base = tmp_path_factory.mktemp("maintenance")
    home = base / "home"
    build_lake(home / "lake", RunStore(home / "runs.sqlite"))
    shutil.copytree(home, base / "pristine")
    return home, base / "pristine"


@pytest.fixture
def home(pristine: tuple[Path, Path]) -> Home:
    live, copy = pristine
    shutil.rmtree(live)
    shutil.copytree(copy, live)
    return Home(live, RunStore(live / "runs.sqlite"))


def later(hours: float) -> dt.datetime:
    return dt.datetime.now(UTC) + dt.timedelta(hours=hours)


def by_table(result: MaintenanceResult) -> dict[str, TableMaintenance]:
    return {t.table: t for t in result.tables}


# -- the job ---------------------------------------------------------------------------------


def test_maintenance_shrinks_the_lake_and_keeps_every_row(home: Home) -> None:
    lake = home.lake
    before = everything(lake)
    disk_before = files_on_disk(lake.root)
    heads = {(t, b): lake.snapshot_id(t, b) for t in TABLES for b in ("dev", "main")}
    assert len(lake.data_files(QUARANTINE, "dev")) == HOURS
    now = later(2)

    result = run_maintenance(
        lake, TABLES, protected_snapshots=snapshots_in_use(home.store, since=now), keep_days=0, now=now
    )

    tables = by_table(result)
    assert set(tables) == set(TABLES)
    entries, quarantine = tables[ENTRIES], tables[QUARANTINE]
    # Every merge left its partitions' old files behind; only the heads' and dev's unpromoted chain stay.
    assert entries.snapshots_expired > 40
    assert entries.orphans_deleted > 40
    # The expiry's commit wrote one metadata.json.
    assert entries.files_after == entries.files_before - entries.orphans_deleted + 1
    assert quarantine.dev_files_before == HOURS and quarantine.dev_files_after == 1
    assert quarantine.files_compacted == HOURS
    assert entries.dev_files_before == entries.dev_files_after == 2
    assert entries.compacted_snapshot is None
    disk_after = files_on_disk(lake.root)
    assert len(disk_before - disk_after) == result.files_deleted
    assert len(disk_after) < len(disk_before) * 0.7
    assert sum(t.bytes_freed for t in result.tables) == result.bytes_freed > 0
    # dev was ahead of main: main is untouched, dev moved only where it was compacted.
    assert everything(lake) == before
    assert {(t, "main"): lake.snapshot_id(t, "main") for t in TABLES} == {
        k: v for k, v in heads.items() if k[1] == "main"
    }
    assert lake.snapshot_id(QUARANTINE, "dev") == quarantine.compacted_snapshot != heads[(QUARANTINE, "dev")]
    assert lake.snapshot_id(ENTRIES, "dev") == heads[(ENTRIES, "dev")]
    assert result.main_moves == {}
    assert_every_snapshot_readable(lake)
    stored = json.loads(json.dumps(result.to_json()))
    assert stored["tables"][1]["files_compacted"] == HOURS
    assert stored["tables"][1]["partitions_compacted"] == [""]

    # Promotion still finds main among dev's ancestors, and then main reads what dev reads.
    assert [m.table for m in plan_moves(lake, TABLES) if m.changes] == list(TABLES)
    promote(lake, home.store, None, TABLES)
    for table in TABLES:
        assert content(lake, table, "main") == before[(table, "dev")]
    assert len(lake.data_files(QUARANTINE, "main")) == 1


def test_recent_history_and_young_files_are_kept(home: Home) -> None:
    lake = home.lake
    snapshots = {t: lake.snapshots(t) for t in TABLES}

    result = run_maintenance(lake, TABLES, protected_snapshots=set())

    assert all(t.snapshots_expired == 0 and t.orphans_deleted == 0 for t in result.tables)
    for table in TABLES:
        kept = {s.snapshot_id for s in lake.snapshots(table)}
        assert {s.snapshot_id for s in snapshots[table]} <= kept
    # The quarantine was still compacted: one more commit, its old files all still there.
    assert by_table(result)[QUARANTINE].dev_files_after == 1
    assert_every_snapshot_readable(lake)


def test_protected_snapshots_survive_with_their_files(home: Home) -> None:
    lake = home.lake
    main = lake.snapshot_id(ENTRIES, "main")
    promoted = [s.snapshot_id for s in lake.history(ENTRIES, "main")]
    # Two snapshots that were main's history: one a reader was pointed at, one nobody was.
    protected, unprotected = promoted[len(promoted) // 2], promoted[len(promoted) // 2 + 1]
    expected = content(lake, ENTRIES, "main", protected)
    assert expected != content(lake, ENTRIES, "main")

    run_maintenance(lake, [ENTRIES], protected_snapshots={protected}, keep_days=0, now=later(2))

    kept = {s.snapshot_id for s in lake.snapshots(ENTRIES)}
    assert protected in kept and main in kept
    assert unprotected not in kept
    assert all(os.path.exists(f) for f in lake.snapshot_files(ENTRIES, protected))
    assert content(lake, ENTRIES, "main", protected) == expected


def test_snapshots_in_use_are_those_of_the_last_recent_and_pending_promotions(home: Home) -> None:
    lake = home.lake
    (record,) = home.store.promotions()
    recorded = {s for entry in record.tables.values() for s in entry.values() if s is not None}
    assert snapshots_in_use(home.store, since=later(1)) == recorded
    # A newer promotion makes the old one history, unless it is recent.
    promote(lake, home.store, None, TABLES)
    newest = home.store.promotions(limit=1)[0]
    newest_ids = {s for entry in newest.tables.values() for s in entry.values() if s is not None}
    assert snapshots_in_use(home.store, since=later(1)) == newest_ids
    assert snapshots_in_use(home.store, since=later(-1)) == newest_ids | recorded
    home.store.begin_promotion(None, {ENTRIES: {"from": 1, "to": 2}})
    assert {1, 2} <= snapshots_in_use(home.store, since=later(1))


def test_orphans_older_than_the_minimum_age_go_and_young_ones_stay(home: Home) -> None:
    lake = home.lake
    table_dir = lake.root / "warehouse" / "raw" / "glucose_entries"
    partition = table_dir / "data" / "reading_month=2024-01"
    old = [
        partition / "00000-0-killed-merge.parquet",
        table_dir / "metadata" / "snap-1-0-killed.avro",
        table_dir / "metadata" / "00099-killed.metadata.json",
    ]
    young = partition / "00000-0-in-flight.parquet"
    foreign = table_dir / "data" / "notes.txt"
    for path in [*old, young, foreign]:
        path.write_bytes(b"PAR1")
    an_hour_ago = dt.datetime.now(UTC).timestamp() - 3700
    for path in [*old, foreign]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    before = everything(lake)

    result = run_maintenance(lake, [ENTRIES], protected_snapshots=set())

    assert by_table(result)[ENTRIES].orphans_deleted == len(old)
    assert result.bytes_freed == 4 * len(old)
    assert not any(path.exists() for path in old)
    assert young.exists() and foreign.exists()
    assert everything(lake) == before
    assert_every_snapshot_readable(lake)


def test_dev_at_main_is_compacted_on_both_branches(home: Home) -> None:
    lake = home.lake
    promote(lake, home.store, None, TABLES)
    before = everything(lake)
    main_before = lake.snapshot_id(QUARANTINE, "main")

    result = run_maintenance(
        lake, TABLES, protected_snapshots=set(), keep_days=0, now=later(2), fast_forward_main=True
    )

    quarantine = by_table(result)[QUARANTINE]
    assert quarantine.main_moved_from == main_before
    assert quarantine.main_moved_to == quarantine.compacted_snapshot == lake.snapshot_id(QUARANTINE, "main")
    assert lake.snapshot_id(QUARANTINE, "dev") == lake.snapshot_id(QUARANTINE, "main")
    assert len(lake.data_files(QUARANTINE, "main")) == 1
    assert result.main_moves == {QUARANTINE: {"from": main_before, "to": quarantine.compacted_snapshot}}
    assert everything(lake) == before
    assert not any(m.changes for m in plan_moves(lake, TABLES))
    assert_every_snapshot_readable(lake)


def test_main_at_dev_stays_unless_asked_to_move(home: Home) -> None:
    lake = home.lake
    promote(lake, home.store, None, TABLES)
    main = lake.snapshot_id(QUARANTINE, "main")

    result = run_maintenance(lake, [QUARANTINE], protected_snapshots=set())

    assert result.main_moves == {}
    assert lake.snapshot_id(QUARANTINE, "main") == main != lake.snapshot_id(QUARANTINE, "dev")
    assert [m.ahead for m in plan_moves(lake, [QUARANTINE])] == [2]


def test_partitions_left_in_several_files_are_rewritten_one_file_each(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ensure_table(GLUCOSE_ENTRIES)
    for hour in range(6):
        lake.append(
            GLUCOSE_ENTRIES,
            glucose_rows(dt.datetime(2024, 1, 31, 21, tzinfo=UTC) + dt.timedelta(hours=hour), 12),
        )
    lake.append(GLUCOSE_ENTRIES, glucose_rows(dt.datetime(2024, 3, 5, tzinfo=UTC), 12))
    (single,) = lake.data_files(ENTRIES, "dev", "reading_month = '2024-03'")
    before = content(lake, ENTRIES, "dev")

    compaction = lake.compact(ENTRIES)

    assert compaction.partitions == ("reading_month=2024-01", "reading_month=2024-02")
    assert (compaction.files_before, compaction.files_rewritten, compaction.files_after) == (7, 6, 3)
    assert len(lake.data_files(ENTRIES, "dev", "reading_month = '2024-01'")) == 1
    assert lake.data_files(ENTRIES, "dev", "reading_month = '2024-03'") == [single]
    assert content(lake, ENTRIES, "dev") == before
    assert lake.snapshot_id(ENTRIES, "main") != compaction.snapshot_id
    assert lake.compact(ENTRIES).snapshot_id is None


def test_a_compaction_that_would_change_rows_commits_nothing(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = home.lake
    head = lake.snapshot_id(QUARANTINE, "dev")
    before = content(lake, QUARANTINE, "dev")
    # A row lost between reading the small files and writing the big one.
    monkeypatch.setattr(housekeeping_module, "_plain_strings", lambda rows: rows.slice(1))

    with pytest.raises(LakeError, match="would change its rows"):
        lake.compact(QUARANTINE)

    monkeypatch.undo()
    assert lake.snapshot_id(QUARANTINE, "dev") == head
    assert content(lake, QUARANTINE, "dev") == before


# -- durability ------------------------------------------------------------------------------

_MAINTAINER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.lake.store import Lake
    from engine.lake.maintenance import run_maintenance

    def announced(method):
        original = getattr(Lake, method)
        def announce(self, name, **kwargs):
            print(method, name, flush=True)
            return original(self, name, **kwargs)
        return announce

    for method in ("expire_unprotected_snapshots", "compact", "delete_orphan_files"):
        setattr(Lake, method, announced(method))
    sys.stdin.readline()
    lake = Lake(Path({root!r}))
    run_maintenance(lake, {tables!r}, protected_snapshots=set(), keep_days=0, orphan_min_age_s=0)
    print("done", flush=True)
    sys.stdin.read()
    """
)

# Where each attempt kills: the step of maintenance of a table that has work in that step.
_KILL_POINTS = (
    ("expire_unprotected_snapshots", ENTRIES),
    ("delete_orphan_files", ENTRIES),
    ("compact", QUARANTINE),
)


@pytest.mark.hardening
def test_kill_9_during_maintenance_leaves_both_branches_readable(
    home: Home, pristine: tuple[Path, Path], tmp_path: Path
) -> None:
    live, copy = pristine
    expected = everything(home.lake)
    script = tmp_path / "maintainer.py"
    script.write_text(_MAINTAINER.format(root=str(live / "lake"), tables=[ENTRIES, QUARANTINE]))
    rng = random.Random(5)

    def start() -> subprocess.Popen[str]:
        # Started ahead and told when to begin, so its imports overlap the previous checks.
        return subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    upcoming = start()
    for attempt, (step, table) in enumerate(_KILL_POINTS):
        maintainer = upcoming
        assert (
            maintainer.stdin is not None and maintainer.stdout is not None and maintainer.stderr is not None
        )
        shutil.rmtree(live)
        shutil.copytree(copy, live)
        maintainer.stdin.write("begin\n")
        maintainer.stdin.flush()
        while (line := maintainer.stdout.readline()) != f"{step} {table}\n":
            assert line, maintainer.stderr.read()
        # A moment that falls anywhere in the step (or soon after it).
        with pytest.raises(subprocess.TimeoutExpired):
            maintainer.wait(timeout=rng.uniform(0.0, 0.2))
        os.kill(maintainer.pid, signal.SIGKILL)
        assert maintainer.wait(timeout=30) == -signal.SIGKILL
        if attempt + 1 < len(_KILL_POINTS):
            upcoming = start()

        lake = Lake(live / "lake")
        assert everything(lake) == expected
        assert_every_snapshot_readable(lake)
        plan_moves(lake, TABLES)
        # The next run finishes the job, sweeping what the killed one left half-written.
        run_maintenance(lake, TABLES, protected_snapshots=set(), keep_days=0, orphan_min_age_s=0)
        assert everything(lake) == expected
        assert len(lake.data_files(QUARANTINE, "dev")) == 1
        assert_every_snapshot_readable(lake)
