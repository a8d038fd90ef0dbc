"""One in-memory DuckDB database per process for the engine's own short queries.

Opening an in-memory DuckDB database costs 10-25 ms (the instance and its threads); a cursor of an
open one costs a fraction of a millisecond. The lake's comparisons and merges, and the layer
build, each take a cursor: a cursor is a connection of its own (its registered Arrow tables, temp
tables and settings are its own), so they do not see each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from engine.sql_macros import define_macros

log = logging.getLogger(__name__)

_lock = threading.Lock()
_database: duckdb.DuckDBPyConnection | None = None
_views_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    cursor = _shared().cursor()
    # A long merge would otherwise draw DuckDB's progress bar over the daemon's stdout or the TUI.
    cursor.execute("SET enable_progress_bar = false")
    return cursor


def _shared() -> duckdb.DuckDBPyConnection:
    global _database
    with _lock:
        if _database is None:
            # Lake files are written once and never changed: their footers can be kept.
            _database = duckdb.connect()
            _database.execute("SET GLOBAL parquet_metadata_cache = true")
            # An ASOF join always by DuckDB's ASOF operator: where the planner thinks one side is
            # small it pairs every row with every candidate (a nested loop) and keeps the newest by
            # aggregation. The daily basal model's month of minutes against its temp basals became
            # 1.4 million pairs that way: 0.24 s against 0.07 s, the same rows.
            _database.execute("SET GLOBAL asof_loop_join_threshold = 0")
            define_macros(_database)  # catalog objects: every cursor sees them, and no view drop removes them
        return _database


def warm_up() -> threading.Thread:
    """Open the shared database in a thread of its own, as a fresh `run` goes on importing and opening
    the engine: DuckDB starts its instance and loads its time-zone data (the first `timezone()` call)
    without Python's lock, about a tenth of a second of a cold run that is no longer waited for. The
    first `scratch()` waits for it (`_shared` holds its lock meanwhile). Never raises: a database that
    cannot open fails at its first use, which says why."""

    def open_shared() -> None:
        try:
            with scratch() as cursor:
                cursor.execute("SELECT timezone('UTC', TIMESTAMPTZ '2000-01-01 00:00:00+00')").fetchall()
        except Exception as e:  # the first real use opens it again and reports the error
            log.debug("opening DuckDB ahead of the run failed: %s", e)

    thread = threading.Thread(target=open_shared, name="phlo-duckdb-warm-up", daemon=True)
    thread.start()
    return thread


@contextmanager
def scratch() -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh cursor of the shared database; create only TEMP objects with it."""
    cursor = _cursor()
    try:
        yield cursor
    finally:
        cursor.close()


@contextmanager
def views_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor of the shared database that may create (non-temporary) schemas and views, one holder
    at a time; every view and schema is dropped when the holder is done."""
    with _views_lock, scratch() as cursor:
        try:
            yield cursor
        finally:
            _drop_views(cursor)


def _drop_views(cursor: duckdb.DuckDBPyConnection) -> None:
    views = cursor.sql(
        "SELECT schema_name, view_name FROM duckdb_views() "
        "WHERE NOT internal AND NOT temporary AND database_name = current_database()"
    ).fetchall()
    for schema, view in views:
        cursor.execute(f"DROP VIEW IF EXISTS {_ident(schema)}.{_ident(view)}")
    schemas = cursor.sql(
        "SELECT schema_name FROM duckdb_schemas() "
        "WHERE NOT internal AND database_name = current_database() AND schema_name <> 'main'"
    ).fetchall()
    for (schema,) in schemas:
        cursor.execute(f"DROP SCHEMA IF EXISTS {_ident(schema)} CASCADE")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
