"""Publishing to a real PostgreSQL started by the suite, from a real lake built by the engine on the simulator."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandera.pandas as pa
import psutil
import psycopg
import pyarrow as pa_arrow
import pytest
import yaml  # type: ignore[import-untyped]
from pandera.typing import Series
from psycopg import sql
from psycopg.conninfo import make_conninfo

import engine.publish.publisher as publish_module
from engine.api.facade import Engine
from engine.config import Secret, Settings, load_settings
from engine.publish.copy import encode_binary_copy
from engine.publish.pgcluster import PrivateCluster
from engine.publish.publisher import (
    NO_POSTGRES,
    Publisher,
    PublishError,
    PublishStatus,
    redact_dsn,
)
from engine.runs.records import PromotionRecord, RunStatus
from engine.runs.retry import RetryPolicy, call_with_retry
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from schemas.marts import MrtGlucoseOverview
from tests.pgclusters import cluster_of, leftover_clusters, remove_private_cluster
from tests.pgserver import PgServer, free_port, server_bindir
from tests.simclock import START, START_S

ZONE = "America/New_York"
REPO = Path(__file__).resolve().parents[1]
TINY_RETRY = RetryPolicy(max_retries=2, delay=0.01, backoff=2.0, jitter=0.0)
HOSTILE_DEVICE = "x'); drop table api.daily_glucose_metrics; --"
HOSTILE_DEVICE_2 = "y\"; drop schema api cascade; -- $$ \\ ' ;"
API_TABLES = (
    "glucose_hourly_patterns",
    "glucose_overview",
    "medication_effectiveness",
    "daily_glucose_metrics",
    "glucose_readings",
)
WINDOW_COUNT = (
    "select count(*) from silver.fct_glucose_readings "
    "where reading_date > (select max(reading_date) from silver.fct_glucose_readings) - 90"
)

needs_server = pytest.mark.skipif(
    server_bindir() is None, reason="PostgreSQL server binaries are not installed"
)


@dataclass
class BuiltLake:
    """One engine home with two promotions: `small` (a 14-day first run), then `large` (a 100-day backfill)."""

    engine: Engine
    small: PromotionRecord
    large: PromotionRecord
    counts: dict[int, dict[str, int]]
    """Expected rows per api table, by promotion id."""


def _counts(engine: Engine) -> dict[str, int]:
    def one(query: str) -> int:
        return int(engine.query(query, "main").rows[0][0])

    return {
        "glucose_overview": one("select count(*) from marts.mrt_glucose_overview"),
        "glucose_hourly_patterns": one("select count(*) from marts.mrt_glucose_hourly_patterns"),
        "daily_glucose_metrics": one("select count(*) from gold.fct_daily_glucose_metrics"),
        "glucose_readings": one(WINDOW_COUNT),
        "medication_effectiveness": one("select count(*) from marts.mrt_medication_effectiveness"),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltLake]:
    home = tmp_path_factory.mktemp("lake-home")
    with SimulatorServer(GlucoseSimulator(seed=5, tz=ZONE)) as server:
        env = {
            "PHLO_HOME": str(home),
            "NIGHTSCOUT_URL": server.url,
            "PHLO_TIMEZONE": ZONE,
            "PHLO_INITIAL_DAYS": "14",
            "PHLO_LOOKBACK_MINUTES": "0",
        }
        engine = Engine(load_settings(env, config_path=home / "no-config.toml"))
        first = engine.run_now()
        assert first.status is RunStatus.SUCCEEDED, first.error
        small = engine.store.last_promotion()
        assert small is not None
        counts = {small.id: _counts(engine)}
        since = (START.date() - timedelta(days=100)).isoformat()
        backfill = engine.backfill(since)
        assert backfill.status is RunStatus.SUCCEEDED, backfill.error
        large = engine.store.last_promotion()
        assert large is not None and large.id != small.id
        counts[large.id] = _counts(engine)
        try:
            yield BuiltLake(engine, small, large, counts)
        finally:
            engine.close()
            remove_private_cluster(home)  # each promotion was published to it


def publisher_for(built: BuiltLake, dsn: str | None, home: Path | None = None, **kwargs: Any) -> Publisher:
    settings: Settings = dataclasses.replace(
        built.engine.settings,
        postgres_dsn=Secret(dsn) if dsn else None,
        home=home or built.engine.settings.home,
    )
    return Publisher(settings, built.engine.lake, **kwargs)


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as con:
        return {
            t: con.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("api", t))).fetchone()[0]  # type: ignore[index]
            for t in API_TABLES
        }


def fingerprint(dsn: str, table: str, key: str) -> str:
    """md5 over every row of an api table in key order: equal fingerprints, equal tables."""
    with psycopg.connect(dsn) as con:
        row = con.execute(
            sql.SQL("select md5(string_agg(t::text, '|' order by t.{})) from {} as t").format(
                sql.Identifier(key), sql.Identifier("api", table)
            )
        ).fetchone()
    assert row is not None
    return str(row[0])


# -- publishing ----------------------------------------------------------------------------------


def test_publishes_the_four_tables_of_the_promotion(built: BuiltLake, pg: PgServer) -> None:
    dsn = pg.create_database("publish_all")
    publisher = publisher_for(built, dsn)
    try:
        outcome = publisher.publish(built.large, run_id="run-1")
    finally:
        publisher.close()
    assert outcome.skipped is None
    assert [t.target_table for t in outcome.tables] == list(API_TABLES)
    assert {t.status for t in outcome.tables} == {PublishStatus.PUBLISHED}
    expected = built.counts[built.large.id]
    assert {t.target_table: t.rows for t in outcome.tables} == expected
    assert table_counts(dsn) == expected
    assert expected["daily_glucose_metrics"] > 90  # the readings window below is a real cut

    with psycopg.connect(dsn) as con:
        lo, hi, days = con.execute(
            "select min(reading_date), max(reading_date), count(distinct reading_date) from api.glucose_readings"
        ).fetchone()  # type: ignore[misc]
        assert hi - lo == timedelta(days=89) and days == 90
        owners = con.execute("select distinct tableowner from pg_tables where schemaname = 'api'").fetchall()
        assert owners == [("phlo_publisher",)]
        types: dict[str, str] = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'api' and table_name = 'glucose_readings'"
            ).fetchall()
        )
        assert types["reading_ts"] == "timestamp with time zone"
        assert types["reading_local_ts"] == "timestamp without time zone"
        assert types["reading_date"] == "date"
        assert types["glucose_mg_dl"] == "integer"
        assert types["is_in_range"] == "boolean"
        keys = con.execute(
            "select tc.table_name, kcu.column_name from information_schema.table_constraints tc "
            "join information_schema.key_column_usage kcu using (constraint_schema, constraint_name) "
            "where tc.table_schema = 'api' and tc.constraint_type = 'PRIMARY KEY' order by 1"
        ).fetchall()
        assert keys == [
            ("daily_glucose_metrics", "reading_date"),
            ("glucose_hourly_patterns", "hour_of_day"),
            ("glucose_overview", "reading_date"),
            ("glucose_readings", "entry_id"),
            ("medication_effectiveness", "treatment_id"),
        ]
        state = con.execute(
            "select table_name, promotion_id, snapshot_id, rows, run_id from phlo_meta.publish_state order by 1"
        ).fetchall()
        assert {r[0]: (r[1], r[2], r[3], r[4]) for r in state} == {
            p.target_table: (
                built.large.id,
                built.large.snapshot(p.lake_table),
                expected[p.target_table],
                "run-1",
            )
            for p in publish_module.PUBLICATIONS
        }
        published = con.execute(
            "select reading_date, day_name, reading_count, avg_glucose_mg_dl, time_in_range_pct, "
            "estimated_a1c_pct, diabetes_management_rating from api.glucose_overview order by reading_date"
        ).fetchall()
        newest = con.execute(
            "select entry_id, reading_ts from api.glucose_readings order by reading_ts desc limit 5"
        ).fetchall()
    lake_rows = built.engine.query(
        "select * from marts.mrt_glucose_overview order by reading_date", "main"
    ).rows
    assert published == [tuple(r) for r in lake_rows]
    lake_ts = dict(
        built.engine.query(
            "select entry_id, reading_ts from silver.fct_glucose_readings order by reading_ts desc limit 5",
            "main",
        ).rows
    )
    # The same instants, though DuckDB ran in America/New_York and PostgreSQL in UTC.
    assert {e: ts for e, ts in newest} == lake_ts


def test_republishing_a_promotion_is_skipped_and_gives_the_same_tables(
    built: BuiltLake, pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = pg.create_database("republish")
    publisher = publisher_for(built, dsn)
    try:
        publisher.publish(built.large)
        before = {
            t: fingerprint(dsn, t, k)
            for t, k in (("glucose_readings", "entry_id"), ("glucose_overview", "reading_date"))
        }
        reads: list[str] = []
        register = built.engine.lake.register_duckdb

        def counting_register(con: Any, name: str, *args: Any, **kwargs: Any) -> None:
            reads.append(name)
            register(con, name, *args, **kwargs)

        monkeypatch.setattr(built.engine.lake, "register_duckdb", counting_register)
        again = publisher.publish(built.large)
        monkeypatch.undo()
    finally:
        publisher.close()
    assert {t.status for t in again.tables} == {PublishStatus.UNCHANGED}
    assert again.published_rows == 0
    assert reads == []  # skipped cheaply: decided by the state in PostgreSQL, no lake table read
    assert table_counts(dsn) == built.counts[built.large.id]
    with psycopg.connect(dsn) as con:
        assert con.execute(
            "select count(*) - count(distinct entry_id) from api.glucose_readings"
        ).fetchone() == (0,)

    # A new process (its own connection) finds the state in the database and skips too.
    fresh = publisher_for(built, dsn)
    try:
        assert {t.status for t in fresh.publish(built.large).tables} == {PublishStatus.UNCHANGED}
        # Forgetting the state forces a real second publish: it must give identical tables.
        with psycopg.connect(dsn) as con:
            con.execute("delete from phlo_meta.publish_state")
        assert {t.status for t in fresh.publish(built.large).tables} == {PublishStatus.PUBLISHED}
    finally:
        fresh.close()
    after = {
        t: fingerprint(dsn, t, k)
        for t, k in (("glucose_readings", "entry_id"), ("glucose_overview", "reading_date"))
    }
    assert after == before
    assert table_counts(dsn) == built.counts[built.large.id]


def test_next_promotion_replaces_only_changed_tables(built: BuiltLake, pg: PgServer) -> None:
    dsn = pg.create_database("incremental")
    publisher = publisher_for(built, dsn)
    try:
        publisher.publish(built.small)
        assert table_counts(dsn) == built.counts[built.small.id]
        outcome = publisher.publish(built.large)
    finally:
        publisher.close()
    assert table_counts(dsn) == built.counts[built.large.id]
    moved = {
        p.target_table
        for p in publish_module.PUBLICATIONS
        if built.small.snapshot(p.lake_table) != built.large.snapshot(p.lake_table)
    }
    assert moved  # the fixture's two promotions differ
    assert {t.target_table for t in outcome.tables if t.status is PublishStatus.PUBLISHED} == moved


READER = textwrap.dedent(
    """
    import json, os, sys, time
    import psycopg
    from psycopg import sql

    dsn, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tables = json.loads(sys.argv[4])
    seen, errors, reads = {}, [], 0
    deadline = time.monotonic() + limit
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("set default_transaction_isolation = 'read committed'")
        print("ready", flush=True)
        while time.monotonic() < deadline and not os.path.exists(stop):
            for table in tables:
                try:
                    count = con.execute(
                        sql.SQL("select count(*) from {}").format(sql.Identifier("api", table))
                    ).fetchone()[0]
                    seen.setdefault(table, {}).setdefault(str(count), 0)
                    seen[table][str(count)] += 1
                except psycopg.Error as e:
                    errors.append(f"{table}: {type(e).__name__}: {e}")
                reads += 1
    print(json.dumps({"seen": seen, "errors": errors[:20], "reads": reads}), flush=True)
    """
)


def test_a_reader_in_another_process_never_sees_a_partial_table(
    built: BuiltLake, pg: PgServer, tmp_path: Path
) -> None:
    dsn = pg.create_database("readers")
    publisher = publisher_for(built, dsn)
    stop = tmp_path / "stop"
    tables = [*API_TABLES, "time_in_range_by_weekday"]
    try:
        publisher.publish(built.small)
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, pg.dsn(dbname="readers"), str(stop), "60", json.dumps(tables)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        outcomes = []
        for number in range(20):
            outcomes.append(publisher.publish(built.large if number % 2 == 0 else built.small))
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    finally:
        publisher.close()
    report = json.loads(out)
    assert all(
        t.status is PublishStatus.PUBLISHED
        for o in outcomes
        for t in o.tables
        if t.target_table == "glucose_readings"
    )
    assert report["errors"] == []
    assert report["reads"] > 100
    small, large = built.counts[built.small.id], built.counts[built.large.id]
    for table in API_TABLES:
        counts = {int(c) for c in report["seen"][table]}
        assert counts <= {small[table], large[table]}, f"{table}: saw {counts}"
    # The reader really ran across swaps: it saw both versions of the readings.
    assert {int(c) for c in report["seen"]["glucose_readings"]} == {
        small["glucose_readings"],
        large["glucose_readings"],
    }
    assert {int(c) for c in report["seen"]["time_in_range_by_weekday"]} == {7}


SNAPSHOT_READER = textwrap.dedent(
    """
    import json, os, sys, time
    import psycopg
    from psycopg import sql

    dsn, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    tables = json.loads(sys.argv[4])
    names = sql.SQL(", ").join(sql.Identifier("api", t) for t in tables)
    seen, errors = {}, []
    deadline = time.monotonic() + limit
    with psycopg.connect(dsn, autocommit=True) as con:
        print("ready", flush=True)
        while time.monotonic() < deadline and not os.path.exists(stop):
            try:
                with con.transaction():
                    con.execute("set transaction isolation level repeatable read")
                    # Locks before the snapshot: LOCK takes none, the first count takes it.
                    con.execute(sql.SQL("lock table {} in access share mode").format(names))
                    counts = []
                    for table in tables:
                        query = sql.SQL("select count(*) from {}").format(sql.Identifier("api", table))
                        counts.append(con.execute(query).fetchone()[0])
                        time.sleep(0.002)
            except psycopg.Error as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            key = json.dumps(counts)
            seen[key] = seen.get(key, 0) + 1
    print(json.dumps({"seen": seen, "errors": errors[:20]}), flush=True)
    """
)


def test_a_repeatable_read_reader_sees_every_table_of_one_promotion(
    built: BuiltLake, pg: PgServer, tmp_path: Path
) -> None:
    """The README's promise for a reader of several tables: in one REPEATABLE READ transaction that
    locks the api tables first, every table is of the same promotion, while promotions swap.

    Mutation: _publish_once swaps each table in a transaction of its own -> mixed counts, fails.
    """
    dsn = pg.create_database("snapshots")
    publisher = publisher_for(built, dsn)
    stop = tmp_path / "stop"
    small, large = built.counts[built.small.id], built.counts[built.large.id]
    tables = [
        t
        for t in (p.target_table for p in publish_module.PUBLICATIONS)
        if t in small and small[t] != large[t]
    ]
    assert len(tables) >= 3, "the two promotions must differ in several tables"
    try:
        publisher.publish(built.small)
        reader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SNAPSHOT_READER,
                pg.dsn(dbname="snapshots"),
                str(stop),
                "90",
                json.dumps(tables),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        for number in range(20):
            publisher.publish(built.large if number % 2 == 0 else built.small)
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    finally:
        publisher.close()
    report = json.loads(out)
    assert report["errors"] == []
    expected = {json.dumps([c[t] for t in tables]) for c in (small, large)}
    assert set(report["seen"]) <= expected, f"mixed promotions: {set(report['seen']) - expected}"
    assert set(report["seen"]) == expected, "the reader did not run across the swaps"


def test_a_repeatable_read_snapshot_taken_before_a_publish_sees_the_new_tables_empty(
    built: BuiltLake, pg: PgServer
) -> None:
    """Why the README tells a REPEATABLE READ reader to lock the api tables first: a swapped table is
    new, and its rows are invisible to a snapshot taken before the swap committed."""
    dsn = pg.create_database("early_snapshot")
    publisher = publisher_for(built, dsn)
    try:
        publisher.publish(built.small)
        with psycopg.connect(pg.dsn(dbname="early_snapshot"), autocommit=True) as reader:
            with reader.transaction():
                reader.execute("set transaction isolation level repeatable read")
                reader.execute("select 1")  # the snapshot, before any api table is touched
                swapped = {t.target_table: t.status for t in publisher.publish(built.large).tables}
                assert swapped["glucose_readings"] is PublishStatus.PUBLISHED
                count = reader.execute("select count(*) from api.glucose_readings").fetchone()
            assert count == (0,)
            assert reader.execute("select count(*) from api.glucose_readings").fetchone() == (
                built.counts[built.large.id]["glucose_readings"],
            )
    finally:
        publisher.close()


def test_web_anon_reads_and_cannot_write(built: BuiltLake, pg: PgServer) -> None:
    dsn = pg.create_database("anon")
    publisher = publisher_for(built, dsn)
    try:
        publisher.publish(built.large)
    finally:
        publisher.close()
    admin = pg.dsn(dbname="anon")
    with psycopg.connect(admin) as con:
        assert con.execute("select rolcanlogin from pg_roles where rolname = 'web_anon'").fetchone() == (
            False,
        )
        with con.transaction():
            con.execute("set local role web_anon")
            for table in (*API_TABLES, "time_in_range_by_weekday"):
                count = con.execute(
                    sql.SQL("select count(*) from {}").format(sql.Identifier("api", table))
                ).fetchone()
                assert count is not None and count[0] > 0
        forbidden = [
            "insert into api.daily_glucose_metrics (reading_date) values ('2001-01-01')",
            "update api.glucose_readings set glucose_mg_dl = 1",
            "delete from api.glucose_overview",
            "truncate api.glucose_hourly_patterns",
            "create table api.mine (a int)",
            "create table public.mine (a int)",
            "create view api.mine as select 1",
            "drop table api.glucose_readings",
            "select * from phlo_meta.publish_state",
        ]
        for statement in forbidden:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), con.transaction():
                con.execute("set local role web_anon")
                con.execute(statement)
    assert table_counts(dsn) == built.counts[built.large.id]


def test_a_table_failing_its_schema_is_blocked_and_keeps_its_previous_version(
    built: BuiltLake, pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    class ImpossibleOverview(MrtGlucoseOverview):
        reading_count: Series[int] = pa.Field(gt=10**9, metadata={"severity": "error"})

    dsn = pg.create_database("blocked")
    publisher = publisher_for(built, dsn)
    try:
        publisher.publish(built.small)
        monkeypatch.setitem(publish_module.TABLE_SCHEMAS, "marts.mrt_glucose_overview", ImpossibleOverview)
        outcome = publisher.publish(built.large)
        by_table = {t.target_table: t for t in outcome.tables}
        blocked = by_table["glucose_overview"]
        assert blocked.status is PublishStatus.BLOCKED
        assert (
            blocked.reason is not None
            and "greater_than" in blocked.reason
            and "reading_count" in blocked.reason
        )
        assert by_table["daily_glucose_metrics"].status is PublishStatus.PUBLISHED
        counts = table_counts(dsn)
        assert counts["glucose_overview"] == built.counts[built.small.id]["glucose_overview"]
        assert counts["daily_glucose_metrics"] == built.counts[built.large.id]["daily_glucose_metrics"]

        monkeypatch.undo()
        healed = publisher.publish(built.large)
        assert [t.target_table for t in healed.tables if t.status is PublishStatus.PUBLISHED] == [
            "glucose_overview"
        ]
    finally:
        publisher.close()
    assert table_counts(dsn) == built.counts[built.large.id]


def test_postgres_down_fails_after_retries_then_the_next_publish_catches_up(
    built: BuiltLake, pg: PgServer
) -> None:
    dsn = pg.create_database("outage")
    retries: list[int] = []
    publisher = publisher_for(built, dsn, retry=TINY_RETRY)
    try:
        publisher.publish(built.small)  # the connection is open and reused when the server goes away
        pg.stop()
        try:
            with pytest.raises(PublishError) as failure:
                publisher.publish(built.large, on_retry=lambda n, s, e: retries.append(n))
        finally:
            pg.start()
        assert retries == [1, 2]
        assert "after 3 attempts" in failure.value.message
        assert failure.value.transient  # the daemon retries the run later
        assert f"promotion {built.large.id} are kept" in failure.value.hint
        assert table_counts(dsn) == built.counts[built.small.id]
        recovered = publisher.publish(built.large)
    finally:
        publisher.close()
    assert all(t.status is not PublishStatus.BLOCKED for t in recovered.tables)
    assert table_counts(dsn) == built.counts[built.large.id]


# -- the private cluster -------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@needs_server
def test_private_cluster_starts_on_demand_and_stops_with_the_app(built: BuiltLake, tmp_path: Path) -> None:
    home = tmp_path / "app-home"
    home.mkdir(mode=0o700)
    publisher = publisher_for(built, None, home=home)
    try:
        assert publisher.describe_target()["running"] is False
        outcome = publisher.publish(built.large)
        target = outcome.target
        assert target["kind"] == "managed" and target["running"] and target["started_by_this_process"]
        assert isinstance(target["port"], int)
        assert len(os.fsencode(Path(target["socket_dir"]) / f".s.PGSQL.{target['port']}")) <= 107
        secret = Path(target["password_file"]).read_text().strip()
        assert len(secret) >= 24 and secret not in json.dumps(target)
        assert {t.status for t in outcome.tables} == {PublishStatus.PUBLISHED}
        pid = target["pid"]
        cluster = publisher.cluster
        assert cluster is not None
        assert psutil.Process(pid).username() == (
            "postgres" if os.geteuid() == 0 else psutil.Process().username()
        )
        with psycopg.connect(cluster.conninfo()) as con:
            assert con.execute("select count(*) from api.glucose_readings").fetchone() == (
                built.counts[built.large.id]["glucose_readings"],
            )
        publisher.close()
        assert _gone(pid)
        assert publisher.describe_target()["running"] is False
        # Started again on demand, with the state kept in the cluster: nothing to publish.
        again = publisher.publish(built.large)
        assert {t.status for t in again.tables} == {PublishStatus.UNCHANGED}
        assert again.target["pid"] != pid
    finally:
        publisher.close()
        remove_private_cluster(home)


KILLED_APP = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    from engine.config import load_settings
    from engine.lake.store import Lake
    from engine.publish.publisher import Publisher
    from engine.runs.store import RunStore

    lake_home, app_home = Path(sys.argv[1]), Path(sys.argv[2])
    settings = load_settings({"PHLO_HOME": str(app_home)}, config_path=app_home / "no-config.toml")
    publisher = Publisher(settings, Lake(lake_home / "lake"))
    promotion = RunStore(lake_home / "runs.sqlite").last_promotion()
    # Publish from a short-lived worker thread, as the TUI does: the cluster must outlive it.
    worker = threading.Thread(target=lambda: publisher.publish(promotion))
    worker.start()
    worker.join()
    print(json.dumps(publisher.describe_target()), flush=True)
    threading.Event().wait(120)
    """
)


@needs_server
def test_private_cluster_is_gone_after_the_app_is_killed(built: BuiltLake, tmp_path: Path) -> None:
    home = tmp_path / "killed-home"
    home.mkdir(mode=0o700)
    app = subprocess.Popen(
        [sys.executable, "-c", KILLED_APP, str(built.engine.settings.home), str(home)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "NIGHTSCOUT_"))},
    )
    pid = None
    try:
        assert app.stdout is not None
        target = json.loads(app.stdout.readline())
        pid = target["pid"]
        assert target["running"] and target["started_by_this_process"]
        time.sleep(0.5)  # the worker thread has ended: the server must still run
        assert not _gone(pid)
        socket_dir, port = target["socket_dir"], target["port"]
        with psycopg.connect(host=socket_dir, port=port, dbname="phlo", user="phlo") as con:
            assert con.execute("select count(*) from api.glucose_overview").fetchone() == (
                built.counts[built.large.id]["glucose_overview"],
            )
        app.send_signal(signal.SIGKILL)
        app.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), "the postmaster outlived the app"
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        if pid is not None and not _gone(pid):
            os.kill(pid, signal.SIGKILL)  # never leave a server behind when the test fails
        remove_private_cluster(home)


@needs_server
def test_remove_postgres_stops_the_private_cluster_and_deletes_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `phlo-tui remove-postgres` and the tests' cleanup (tests/pgclusters.py) remove: the
    server, left running by another process here, and every file of the cluster, with
    /var/lib/phlo-tui/postgres-<id> as root. Refused while another process writes the home.

    Mutation: PrivateCluster.remove keeps cluster_dir -> fails (and the session guard reports it).
    """
    monkeypatch.setenv("PHLO_MANAGE_POSTGRES", "true")

    def remove_postgres() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "phlo_tui.cli", "remove-postgres", "--yes"]
        return subprocess.run(
            argv, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300
        )

    cluster = cluster_of(home)
    cluster.ensure_running()  # as a publish does
    pid = cluster.running_pid()
    assert pid is not None
    assert leftover_clusters(tmp_path) == [home / "postgres"]
    with Engine(load_settings()) as engine:
        engine.become_writer()
        refused = remove_postgres()
    assert refused.returncode != 0 and "is being written by" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and cluster.running_pid() == pid
    done = remove_postgres()
    assert done.returncode == 0, done.stderr
    assert f"removed {cluster.cluster_dir}" in done.stdout
    assert _gone(pid)
    assert not cluster.cluster_dir.exists() and not (home / "postgres").exists()
    assert leftover_clusters(tmp_path) == []
    assert cluster.remove() == []


# -- hostile input, secrets ----------------------------------------------------------------------


def test_hostile_values_and_config_cannot_inject_sql(built: BuiltLake, pg: PgServer, tmp_path: Path) -> None:
    now_ms = int(START_S * 1000)
    entries = GlucoseSimulator(seed=9, tz="UTC").export(now_ms - 3 * 86_400_000, now_ms, kind="sgv")
    for index, entry in enumerate(entries):
        entry["device"] = HOSTILE_DEVICE if index % 2 else HOSTILE_DEVICE_2
    export = tmp_path / "hostile.json"
    export.write_text(json.dumps(entries))
    home = tmp_path / "hostile-home"
    env = {
        "PHLO_HOME": str(home),
        "NIGHTSCOUT_URL": "http://127.0.0.1:9",
        "PHLO_TIMEZONE": "UTC",
        "PHLO_MANAGE_POSTGRES": "false",  # the publisher below has the DSN; no private cluster to leave
    }
    dsn = pg.create_database("hostile")
    weird_name = "x'; drop table api.glucose_readings; -- \" $$"
    with Engine(load_settings(env, config_path=home / "no-config.toml")) as engine:
        run = engine.import_file(export)
        assert run.status is RunStatus.SUCCEEDED, run.error
        promotion = engine.store.last_promotion()
        assert promotion is not None
        settings = dataclasses.replace(
            engine.settings, postgres_dsn=Secret(make_conninfo(dsn, application_name=weird_name))
        )
        publisher = Publisher(settings, engine.lake)
        try:
            outcome = publisher.publish(promotion)
            assert {t.status for t in outcome.tables} == {PublishStatus.PUBLISHED}
            with psycopg.connect(dsn) as con:
                names = {
                    r[0] for r in con.execute("select application_name from pg_stat_activity").fetchall()
                }
                assert weird_name in names  # passed through as a value, verbatim
                devices: dict[str, int] = dict(
                    con.execute("select device, count(*) from api.glucose_readings group by 1").fetchall()
                )
                tables = {
                    r[0] for r in con.execute("select tablename from pg_tables where schemaname = 'api'")
                }
        finally:
            publisher.close()
    assert set(devices) == {HOSTILE_DEVICE, HOSTILE_DEVICE_2}
    assert sum(devices.values()) == next(
        t.rows for t in outcome.tables if t.target_table == "glucose_readings"
    )
    assert tables == set(API_TABLES)


def test_describe_target_never_shows_a_password(built: BuiltLake) -> None:
    for dsn in (
        "postgresql://alice:hunter2%27x@db.example:5433/glucose?application_name=phlo",
        "host=127.0.0.1 port=5432 dbname=glucose user=alice password='hunter2 with spaces'",
    ):
        publisher = publisher_for(built, dsn)
        target = publisher.describe_target()
        text = json.dumps(target)
        assert "hunter2" not in text
        assert target["kind"] == "dsn" and target["database"] == "glucose" and target["user"] == "alice"
        assert "password=***" in target["dsn"]
    broken = publisher_for(built, "host=127.0.0.1 password=hunter2 this is not a conninfo")
    assert "hunter2" not in json.dumps(broken.describe_target())
    with pytest.raises(PublishError) as failure:
        broken.publish(built.large)
    assert "hunter2" not in str(failure.value)
    assert "hunter2" not in redact_dsn("postgresql://u:hunter2@h/db")


def test_without_any_postgresql_the_publish_is_skipped(
    built: BuiltLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "find_server_binaries", lambda: None)
    publisher = publisher_for(built, None)
    outcome = publisher.publish(built.large)
    assert outcome.skipped == NO_POSTGRES
    assert outcome.tables == ()
    assert outcome.target == {"kind": "none", "skipped": NO_POSTGRES}
    assert "PHLO_POSTGRES_DSN" in NO_POSTGRES and "server binaries" in NO_POSTGRES


# -- the documented queries ----------------------------------------------------------------------

# (PostgREST path, the same query in SQL) as in docs/postgrest.md.
DOC_QUERIES = [
    (
        "/glucose_overview?order=reading_date.desc&limit=7",
        "select * from api.glucose_overview order by reading_date desc limit 7",
    ),
    (
        "/daily_glucose_metrics?select=reading_date,time_in_range_pct,cv_pct"
        "&reading_date=gte.{since}&reading_date=lte.{until}&order=reading_date",
        "select reading_date, time_in_range_pct, cv_pct from api.daily_glucose_metrics "
        "where reading_date >= %(since)s and reading_date <= %(until)s order by reading_date",
    ),
    (
        "/glucose_overview?diabetes_management_rating=eq.Excellent&order=reading_date.desc",
        "select * from api.glucose_overview where diabetes_management_rating = 'Excellent' "
        "order by reading_date desc",
    ),
    (
        "/time_in_range_by_weekday?order=day_of_week",
        "select * from api.time_in_range_by_weekday order by day_of_week",
    ),
]


@pytest.fixture(scope="module")
def documented(built: BuiltLake, pg: PgServer) -> Iterator[tuple[str, dict[str, str]]]:
    """A database with the large promotion published, and the date range the examples ask for."""
    dsn = pg.create_database("documented")
    publisher = publisher_for(built, dsn)
    try:
        publisher.publish(built.large)
    finally:
        publisher.close()
    newest = date.fromisoformat(
        str(built.engine.query("select max(reading_date) from gold.fct_daily_glucose_metrics").rows[0][0])
    )
    yield (
        dsn,
        {
            "since": (newest - timedelta(days=20)).isoformat(),
            "until": (newest - timedelta(days=10)).isoformat(),
        },
    )


def test_documented_queries_as_web_anon_in_sql(
    built: BuiltLake, pg: PgServer, documented: tuple[str, dict[str, str]]
) -> None:
    _, dates = documented
    with psycopg.connect(pg.dsn(dbname="documented")) as con:
        results = []
        for _, query in DOC_QUERIES:
            with con.transaction():
                con.execute("set local role web_anon")
                results.append(con.execute(query, dates if "%(" in query else None).fetchall())
    latest, date_range, excellent, weekdays = results
    lake = built.engine.query
    assert latest == [
        tuple(r)
        for r in lake("select * from marts.mrt_glucose_overview order by reading_date desc limit 7").rows
    ]
    assert len(date_range) == 11
    assert [r[0].isoformat() for r in (date_range[0], date_range[-1])] == [dates["since"], dates["until"]]
    want_excellent = lake(
        "select count(*) from marts.mrt_glucose_overview where diabetes_management_rating = 'Excellent'"
    ).rows[0][0]
    assert len(excellent) == want_excellent > 0
    assert [r[1] for r in weekdays] == [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    by_day = dict(
        lake("select day_name, avg(time_in_range_pct) from gold.fct_daily_glucose_metrics group by 1").rows
    )
    for _, day, _days, tir, _ in weekdays:
        assert float(tir) == pytest.approx(by_day[day], abs=0.05)
    assert sum(r[2] for r in weekdays) == built.counts[built.large.id]["daily_glucose_metrics"]


@pytest.mark.skipif(shutil.which("postgrest") is None, reason="postgrest is not on PATH")
def test_postgrest_serves_the_documented_queries(
    pg: PgServer, documented: tuple[str, dict[str, str]]
) -> None:
    _, dates = documented
    with psycopg.connect(pg.dsn(dbname="documented"), autocommit=True) as con:
        if con.execute("select 1 from pg_roles where rolname = 'authenticator'").fetchone() is None:
            con.execute("create role authenticator login noinherit")
        con.execute("grant web_anon to authenticator")
    port = free_port()
    env = {
        **os.environ,
        "PGRST_DB_URI": f"postgres://authenticator@127.0.0.1:{pg.port}/documented",
        "PGRST_DB_SCHEMAS": "api",
        "PGRST_DB_ANON_ROLE": "web_anon",
        "PGRST_JWT_SECRET": "a-test-secret-of-at-least-32-characters!",
        "PGRST_SERVER_PORT": str(port),
        "PGRST_SERVER_HOST": "127.0.0.1",
    }
    server = subprocess.Popen(["postgrest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + "/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "postgrest did not come up"
            time.sleep(0.1)
        with psycopg.connect(pg.dsn(dbname="documented")) as con:
            for path, query in DOC_QUERIES:
                response = httpx.get(base + path.format(**dates), timeout=10)
                assert response.status_code == 200, response.text
                with con.transaction():
                    con.execute("set local role web_anon")
                    expected = con.execute(query, dates if "%(" in query else None).fetchall()
                assert len(response.json()) == len(expected)
                first_column = next(iter(response.json()[0]))
                assert [str(row[first_column]) for row in response.json()] == [str(r[0]) for r in expected]
        refused = httpx.post(base + "/glucose_overview", json={"reading_date": "2001-01-01"}, timeout=10)
        assert refused.status_code in (401, 403)
    finally:
        server.terminate()
        server.wait(10)


# -- pieces --------------------------------------------------------------------------------------


def test_binary_copy_encoding_round_trips_every_type(pg: PgServer) -> None:
    rows = pa_arrow.table(
        {
            "t": pa_arrow.array(["", None, "ünïcødé ✓", "x'); drop table t; --", "a" * 300]),
            "b": pa_arrow.array([True, False, None, True, False]),
            "s": pa_arrow.array([0, -1, None, 32767, -32768], pa_arrow.int16()),
            "i": pa_arrow.array([0, -1, None, 2**31 - 1, -(2**31)], pa_arrow.int32()),
            "l": pa_arrow.array([0, -1, None, 2**63 - 1, -(2**63)], pa_arrow.int64()),
            "r": pa_arrow.array([0.5, -1.25, None, 3.0e38, float("inf")], pa_arrow.float32()),
            "f": pa_arrow.array([0.1, -1e-300, None, 1e300, float("-inf")], pa_arrow.float64()),
            "d": pa_arrow.array(
                [date(2000, 1, 1), date(1999, 12, 31), None, date(1970, 1, 1), date(2262, 4, 11)],
                pa_arrow.date32(),
            ),
            "ts": pa_arrow.array(
                [0, -1, None, 946_684_800_000_000, 1_795_641_228_123_456], pa_arrow.timestamp("us")
            ),
            "tz": pa_arrow.array(
                [0, -1, None, 946_684_800_000_000, 1_795_641_228_123_456],
                pa_arrow.timestamp("us", tz="America/New_York"),
            ),
        }
    )
    kinds = ["text", "bool", "int2", "int4", "int8", "float4", "float8", "date", "timestamp", "timestamptz"]
    ddl = "t text, b boolean, s smallint, i integer, l bigint, r real, f double precision, d date, ts timestamp, tz timestamptz"
    payload = encode_binary_copy(rows, kinds)
    with psycopg.connect(pg.dsn()) as con, con.transaction(force_rollback=True):
        con.execute("set local timezone = 'UTC'")
        con.execute(f"create temporary table round_trip (n serial, {ddl})")
        with (
            con.cursor() as cur,
            cur.copy(f"copy round_trip ({', '.join(rows.column_names)}) from stdin (format binary)") as copy,
        ):
            copy.write(payload)
        back = con.execute(f"select {', '.join(rows.column_names)} from round_trip order by n").fetchall()
    expected = list(zip(*(rows[c].to_pylist() for c in rows.column_names), strict=True))
    assert len(back) == len(expected)
    for got, want in zip(back, expected, strict=True):
        assert got[:5] == want[:5] and got[6:] == want[6:]
        assert got[5] == (None if want[5] is None else pytest.approx(want[5]))


def test_retry_policy_delays_are_pure_and_bounded() -> None:
    policy = RetryPolicy(max_retries=3, delay=0.5, backoff=2.0, jitter=0.2)
    assert [policy.delay_for(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert policy.delay_for(2, draw=0.0) == pytest.approx(0.8)
    assert policy.delay_for(2, draw=0.999999) == pytest.approx(1.2, abs=1e-5)
    with pytest.raises(ValueError):
        policy.delay_for(0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)
    calls: list[int] = []
    slept: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.OperationalError("down")
        return "ok"

    assert (
        call_with_retry(flaky, policy, transient=lambda e: True, sleep=slept.append, draw=lambda: 0.5) == "ok"
    )
    assert slept == [0.5, 1.0]

    def broken() -> None:
        raise ValueError("not transient")

    slept.clear()
    with pytest.raises(ValueError):
        call_with_retry(broken, policy, transient=lambda e: isinstance(e, psycopg.Error), sleep=slept.append)
    assert slept == []


def test_socket_path_stays_under_the_unix_limit_for_a_long_home(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-directory-name-" * 5) / "home" / "postgres"
    cluster = PrivateCluster(deep, Path("/usr/lib/postgresql/15/bin"))
    socket = cluster.socket_dir / ".s.PGSQL.65535"
    assert len(os.fsencode(socket)) <= 107
    assert len(os.fsencode(deep / "run" / ".s.PGSQL.65535")) > 107  # the preferred place would not fit


@needs_server
def test_compose_roles_let_phlo_publish_and_postgrest_read(built: BuiltLake) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    postgrest = compose["services"]["postgrest"]["environment"]
    assert postgrest["PGRST_DB_SCHEMAS"] == publish_module.API_SCHEMA
    assert postgrest["PGRST_DB_ANON_ROLE"] == publish_module.ANON_ROLE
    assert postgrest["PGRST_DB_URI"].startswith("postgres://authenticator:")
    assert compose["services"]["postgres"]["environment"]["POSTGRES_DB"] == "phlo"
    # The init script as the postgres image runs it (sourced by bash), against a fresh server.
    script = compose["configs"]["phlo_roles"]["content"].replace("$$", "$")
    bindir = server_bindir()
    assert bindir is not None
    server = PgServer(bindir).start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as con:
            con.execute("create database phlo")
        env = {
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(server.port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "phlo",
            "PUBLISHER_PASSWORD": 'it\'s "quoted"; drop role postgres; --',
            "AUTHENTICATOR_PASSWORD": "$another one",
        }
        done = subprocess.run(
            ["bash", "-c", "set -Eeo pipefail; source /dev/stdin"],
            input=script,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        publisher = publisher_for(built, server.dsn(user="phlo", dbname="phlo"))
        try:
            outcome = publisher.publish(built.large)
        finally:
            publisher.close()
        assert {t.status for t in outcome.tables} == {PublishStatus.PUBLISHED}
        with psycopg.connect(server.dsn(user="authenticator", dbname="phlo")) as con:
            roles: dict[str, bool] = dict(
                con.execute(
                    "select rolname, rolcanlogin from pg_roles "
                    "where rolname in ('phlo', 'web_anon', 'authenticator', 'postgres')"
                ).fetchall()
            )
            assert roles == {"phlo": True, "web_anon": False, "authenticator": True, "postgres": True}
            con.execute("set role web_anon")
            assert con.execute("select count(*) from api.time_in_range_by_weekday").fetchone() == (7,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                con.execute("delete from api.glucose_readings")
    finally:
        server.cleanup()


def test_text_with_a_nul_character_is_refused_with_its_column() -> None:
    publish_module._refuse_nul(pa_arrow.table({"device": ["xDrip", None, ""]}))
    with pytest.raises(PublishError, match="'device' has 1 value"):
        publish_module._refuse_nul(pa_arrow.table({"device": ["xDrip", "bad\x00name", None]}))
