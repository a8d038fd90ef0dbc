"""Reads before (or instead of) the engine: the run store and a few lake tables, without pyiceberg.

Importing the engine takes seconds (pyiceberg and its SQL catalog, pandas, pandera, dlt). The
dashboard's first read needs two tables; `phlo-tui status`, `quality` and `metrics` need the run
store, each table's heads and the daily metrics table; `diff` needs the heads, and the data files of both
heads of a table whose dev is ahead of its main, read from its Avro manifests with the standard library
(engine.lake.manifest_files; engine.lake.diff.metadata_diff compares their rows). For the reads of the
Overview and `metrics` the engine records the files of the snapshots readers may be sent to
(`record_files`: the heads of dev and main, and main's promoted snapshot, of RECORDED_TABLES) in the run
store. `FastReader` finds a branch's snapshot as the engine does (main: the last promotion's,
from the run store; otherwise the branch's head in the table's current metadata.json, found through
the catalog's SQLite database), and reads it only when that very snapshot was recorded; anything else
(not recorded, a file gone, an older store) raises NotRecorded and the caller asks the engine. It never
writes: its SQLite connections refuse writes (runstore.query_only).

Imports nothing heavy: sqlite3, json, zlib and DuckDB; tests check it in a fresh interpreter.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb

from engine.api.reads import BRANCHES, DAILY_METRICS, HomeStatus, home_status, lake_table_names, metrics_query
from engine.api.scan_reads import IMPORT_RECORDS
from engine.api.treatment_reads import DAILY_TREATMENTS, EFFECTIVENESS
from engine.clock import Clock, clock_from_env
from engine.config import Settings
from engine.errors import PhloError
from engine.lake.catalog_uri import CATALOG_NAME, scrub
from engine.lake.diff import TableDiff, metadata_diff
from engine.lake.manifest_files import Unreadable, read_metadata, ref_snapshots
from engine.lake.views import QueryResult, connect, create_view, select_sql
from engine.publish.target import describe_target, private_cluster
from engine.runs.database import query_only
from engine.runs.lease import live_daemon
from engine.runs.records import ENTRIES_WATERMARK, CheckRecord, LeaseRecord, PromotionRecord, RunRecord
from engine.runs.store import RunStore
from engine.transform.model_files import model_files

if TYPE_CHECKING:
    from engine.lake.store import Lake

log = logging.getLogger(__name__)

EARLY_TABLES = ("silver.fct_glucose_readings", "silver.fct_treatments", IMPORT_RECORDS)
"""The tables the Overview reads (the scans of CSV imports too): their snapshots' files are recorded for
the first read."""
RECORDED_TABLES = (*EARLY_TABLES, DAILY_METRICS, DAILY_TREATMENTS, EFFECTIVENESS)
"""The tables whose snapshots' files are recorded: the Overview's, the daily table `metrics` reads, and
the treatment tables `report` reads besides them."""


class NotRecorded(Exception):
    """The first read cannot be answered from what is recorded: wait for the engine."""


class FastReader:
    """RECORDED_TABLES of one home as Engine.query reads them, from recorded files, and the answers of the
    read-only commands that need no other table (status, quality, metrics). Close it when done.

    Its queries share one DuckDB connection, one at a time: opening one costs a twentieth of a second,
    and `report` asks six questions."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock if clock is not None else clock_from_env()
        """Data time, as Engine.clock."""
        self.timezone = settings.timezone
        self._catalog_path = settings.lake_dir / "catalog.sqlite"
        self._store: RunStore | None = None
        self._catalog: sqlite3.Connection | None = None
        self._pinned: dict[str, int | None] | None = None
        self._locations: dict[str, str | None] = {}
        self._heads: dict[str, dict[str, int]] = {}
        self._duckdb: duckdb.DuckDBPyConnection | None = None
        self._views: dict[str, str] = {}
        """Table -> the branch its view on the DuckDB connection reads."""
        self._duckdb_lock = threading.Lock()
        with self._boundary("opening the run store"):
            self._store = RunStore(settings.runs_db, read_only=True)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._catalog is not None:
            self._catalog.close()
        if self._duckdb is not None:
            self._duckdb.close()

    # the run store, as the Engine's methods of the same names read it

    def daemon(self) -> LeaseRecord | None:
        """The running daemon that owns this home, if any (this reader never holds the lease)."""
        with self._boundary("reading the lease"):
            return live_daemon(self._store_())

    def watermark_ms(self) -> int | None:
        with self._boundary("reading the watermark"):
            return self._store_().watermark(ENTRIES_WATERMARK)

    def model_count(self) -> int:
        return len(model_files())

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        with self._boundary("reading the runs"):
            return self._store_().list_runs(limit)

    def gate_errors(self) -> list[str]:
        with self._boundary("reading the gate"):
            return self._store_().standing_gate_errors()

    def last_promotion(self) -> PromotionRecord | None:
        with self._boundary("reading the promotions"):
            return self._store_().last_promotion()

    def quality(self, run_id: str | None = None) -> list[CheckRecord]:
        """Engine.quality: failed checks of one run, or of the recent runs."""
        with self._boundary("reading the checks"):
            return self._store_().checks(run_id)

    def status(self) -> HomeStatus:
        """Engine.status, with the table heads from each table's current metadata.json."""
        with self._boundary("reading the status"):
            tables: dict[str, dict[str, int | None]] = {}
            for name in lake_table_names():
                location = self._location(name)
                if location is not None:
                    refs = ref_snapshots(read_metadata(location))
                    tables[name] = {b: refs.get(b) for b in BRANCHES}
            target = describe_target(self.settings, private_cluster(self.settings))
            return home_status(self.settings, self._store_(), tables, target, self.clock())

    def diff(self) -> list[TableDiff]:
        """Engine.diff: every existing table with its heads, from its metadata.json; the rows of a table whose
        dev is ahead of its main compared in DuckDB over the data files its manifests list
        (engine.lake.diff.metadata_diff). NotRecorded when that reading cannot answer as the engine
        would (another storage, delete files, diverged branches, a damaged file): the engine answers."""
        with self._boundary("reading the branch heads"):
            diffs = []
            con: duckdb.DuckDBPyConnection | None = None
            manifests: dict[str, list[str]] = {}
            try:
                for name in lake_table_names():
                    location = self._location(name)
                    if location is None:
                        continue
                    metadata = read_metadata(location)
                    refs = ref_snapshots(metadata)
                    main, dev = refs.get("main"), refs.get("dev")
                    if dev is None or dev == main:
                        diffs.append(TableDiff(name, main, dev, 0, 0, 0, ()))
                        continue
                    if main is None:
                        raise NotRecorded(f"{name} has a dev but no main")
                    if con is None:
                        con = connect(self.timezone)
                    diffs.append(metadata_diff(con, name, metadata, main, dev, manifests))
            finally:
                if con is not None:
                    con.close()
            return diffs

    def metrics(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        days: int | None = None,
        branch: str = "main",
    ) -> QueryResult:
        """Engine.metrics, from the recorded files of the daily table's snapshot."""
        with self._boundary("reading the metrics"):
            sql, params = metrics_query(self.settings, since, until, days, self.clock())
        if not self.has_table(DAILY_METRICS):
            raise NotRecorded(f"no table {DAILY_METRICS}")
        return self.query(sql, branch, params)

    # the lake

    def has_table(self, name: str) -> bool:
        """Whether recorded lake table `name` exists (it has a row in the catalog)."""
        return name in RECORDED_TABLES and self._location(name) is not None

    def query(self, sql: str, branch: str = "main", params: dict[str, Any] | None = None) -> QueryResult:
        """Run DuckDB SQL over the RECORDED_TABLES it names, as of `branch` (main: as of the last promotion).

        Raises NotRecorded when a table's snapshot was not recorded or cannot be read as recorded.
        """
        if branch not in BRANCHES:
            raise NotRecorded(f"unknown branch {branch!r}")
        with self._boundary(f"reading {branch}"), self._duckdb_lock:
            if self._duckdb is None:
                self._duckdb = connect(self.timezone)
            con = self._duckdb
            for table in RECORDED_TABLES:
                if table in sql and self.has_table(table) and self._views.get(table) != branch:
                    self._views.pop(table, None)
                    self._register(con, table, branch)
                    self._views[table] = branch
            relation = con.sql(sql, params=params)
            if relation is None:
                return QueryResult((), [])
            return QueryResult(tuple(relation.columns), relation.fetchall())

    def _register(self, con: duckdb.DuckDBPyConnection, table: str, branch: str) -> None:
        snapshot_id = self._snapshot(table, branch)
        recorded = self._store_().snapshot_files(table, snapshot_id)
        if recorded is None:
            raise NotRecorded(f"snapshot {snapshot_id} of {table} ({branch}) was not recorded")
        columns, files = recorded
        create_view(con, table, select_sql(con, columns, files))

    def _snapshot(self, table: str, branch: str) -> int:
        """The snapshot Engine.query reads: main's promoted one when there is one, else the branch head."""
        heads = self._heads.get(table)
        if heads is None:
            heads = self._heads[table] = _branch_heads(self._location(table))
        if branch == "main":
            if self._pinned is None:
                self._pinned = self._store_().main_snapshots()
            pinned = self._pinned.get(table)
            if pinned is not None:
                # The engine reads it through the table's metadata: unreadable there (a damaged file,
                # an expired snapshot), the engine says so, and the recorded files must not answer.
                if pinned not in heads.values() and pinned not in _snapshot_ids(self._location(table)):
                    raise NotRecorded(f"snapshot {pinned} of {table} is not in its metadata")
                return pinned
        if branch not in heads:
            raise NotRecorded(f"branch {branch} of {table} does not exist")
        return heads[branch]

    def _location(self, table: str) -> str | None:
        """The table's current metadata.json, from the catalog's row; None when the table does not exist."""
        if table not in self._locations:
            namespace, _, name = table.rpartition(".")
            with self._boundary("reading the catalog"):
                if self.settings.catalog_uri is not None:
                    row = _postgres_location(self.settings.catalog_uri, namespace, name)
                else:
                    if self._catalog is None:
                        self._catalog = query_only(self._catalog_path, timeout=5)
                    row = self._catalog.execute(
                        "select metadata_location from iceberg_tables where catalog_name = ? "
                        "and table_namespace = ? and table_name = ? and metadata_location is not null",
                        (CATALOG_NAME, namespace, name),
                    ).fetchone()
            self._locations[table] = None if row is None else str(row[0])
        return self._locations[table]

    def _store_(self) -> RunStore:
        assert self._store is not None
        return self._store

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        """Whatever fails is a miss, never an error on screen: the engine's read follows."""
        try:
            yield
        except NotRecorded:
            raise
        except (
            PhloError,
            Unreadable,
            sqlite3.Error,
            duckdb.Error,
            OSError,
            ValueError,
            KeyError,
            TypeError,
        ) as e:
            raise NotRecorded(f"{what}: {type(e).__name__}: {e}") from e


def _branch_heads(location: str | None) -> dict[str, int]:
    """Branch name -> head snapshot id, from a metadata.json's refs."""
    if location is None:
        raise NotRecorded("no such table")
    refs = read_metadata(location).get("refs") or {}
    return {name: int(ref["snapshot-id"]) for name, ref in refs.items() if ref.get("type") == "branch"}


def _snapshot_ids(location: str | None) -> set[int]:
    if location is None:
        raise NotRecorded("no such table")
    return {int(s["snapshot-id"]) for s in read_metadata(location).get("snapshots") or []}


def record_files(lake: Lake, store: RunStore) -> None:
    """Record the files of every snapshot of RECORDED_TABLES a light read may be sent to (dev's and main's
    heads, main's promoted snapshot) and forget the others. Called by the writer after a run or a
    promotion, and by the dashboard once its engine is there (a home recorded by an older version).

    A failure is logged, never raised: the dashboard's first read then waits for the engine.
    """
    try:
        pinned = store.main_snapshots()
        for table in RECORDED_TABLES:
            if not lake.table_exists(table):
                continue
            wanted = {lake.snapshot_id(table, branch) for branch in BRANCHES} | {pinned.get(table)}
            keep = {s for s in wanted if s is not None}
            for snapshot_id in sorted(keep - store.recorded_snapshots(table)):
                store.record_snapshot_files(
                    table,
                    snapshot_id,
                    lake.snapshot_columns(table, snapshot_id),
                    lake.snapshot_files(table, snapshot_id),
                )
            store.forget_snapshot_files(table, keep)
    except PhloError as e:
        log.warning("cannot record the files of the overview's tables: %s", e)
    except Exception:
        # Only a speed-up of the next start: it must never fail the run or promotion that called it.
        log.exception("recording the files of the overview's tables failed")


def _postgres_location(uri: str, namespace: str, name: str) -> tuple[str] | None:
    """The catalog row's metadata location, from a catalog kept in PostgreSQL (engine.lake.catalog_uri), in
    a read-only transaction. Its errors are misses: the engine's read follows and says what is wrong."""
    import psycopg  # only for a catalog in PostgreSQL

    try:
        with psycopg.connect(uri, connect_timeout=5, autocommit=False) as con:
            con.read_only = True
            found = con.execute(
                "select metadata_location from iceberg_tables where catalog_name = %s "
                "and table_namespace = %s and table_name = %s and metadata_location is not null",
                (CATALOG_NAME, namespace, name),
            ).fetchone()
    except psycopg.Error as e:
        raise NotRecorded(
            f"reading the catalog in PostgreSQL: {type(e).__name__}: {scrub(str(e), uri)}"
        ) from None
    return None if found is None else (str(found[0]),)
