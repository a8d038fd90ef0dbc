"""Branch diff: what `dev` holds that `main` doesn't, per table — snapshots, rows, local days, schema.

Imports nothing heavy. branch_diff reads the lake through pyiceberg (engine.lake.store); metadata_diff gives the
same answer for one table from its metadata.json and manifests (engine.lake.manifest_files), for the
command line's light reader (engine.api.fastread), which must not import pyiceberg. Both compare the rows
of the data files one head holds and the other not in DuckDB (_compare)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from engine.lake.bookkeeping import BOOKKEEPING_COLUMNS
from engine.lake.manifest_files import Unreadable, duckdb_columns, lineage, snapshot_files, snapshot_schema
from engine.lake.views import create_view, select_sql

if TYPE_CHECKING:
    from engine.lake.store import Lake

# Columns that carry a reading's time, in order of preference, for "local days touched".
_DAY_COLUMNS = ("reading_date", "reading_local_ts", "reading_ts")


@dataclass(frozen=True)
class TableDiff:
    """dev against main for one table."""

    table: str
    main_snapshot: int | None
    dev_snapshot: int | None
    snapshots_ahead: int
    rows_added: int
    rows_removed: int
    days_touched: tuple[str, ...]
    schema_changes: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.snapshots_ahead > 0 or self.rows_added > 0 or self.rows_removed > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "main_snapshot": self.main_snapshot,
            "dev_snapshot": self.dev_snapshot,
            "snapshots_ahead": self.snapshots_ahead,
            "rows_added": self.rows_added,
            "rows_removed": self.rows_removed,
            "days_touched": list(self.days_touched),
            "schema_changes": list(self.schema_changes),
        }


def branch_diff(lake: Lake, tables: Sequence[str], timezone: str) -> list[TableDiff]:
    """Compare the heads of dev and main of every table.

    Rows are compared only in the data files the two snapshots do not share (a merge rewrites whole
    partitions, so that is where every change is), ignoring the bookkeeping columns. Raises
    PromotionError when a table's branches have diverged.
    """
    from engine.lake.promotion import plan_moves
    from engine.lake.views import connect

    diffs = []
    con = connect(timezone)
    try:
        # Each table is loaded from the catalog once for all that is asked of it (heads, history, files,
        # schemas): one version of it throughout, instead of a load of its metadata.json per question.
        with lake.pinned():
            for move in plan_moves(lake, tables):
                if move.dev_snapshot is None or move.dev_snapshot == move.main_snapshot:
                    diffs.append(TableDiff(move.table, move.main_snapshot, move.dev_snapshot, 0, 0, 0, ()))
                    continue
                diffs.append(
                    _table_diff(con, lake, move.table, move.main_snapshot, move.dev_snapshot, move.ahead)
                )
    finally:
        con.close()
    return diffs


def _table_diff(
    con: duckdb.DuckDBPyConnection, lake: Lake, table: str, main: int | None, dev: int, ahead: int
) -> TableDiff:
    dev_files = set(lake.snapshot_files(table, dev))
    main_files = set(lake.snapshot_files(table, main)) if main is not None else set()
    dev_schema = lake.snapshot_schema(table, dev)
    main_schema = lake.snapshot_schema(table, main) if main is not None else {}
    lake.register_files(con, "_dev_only", table, sorted(dev_files - main_files), snapshot_id=dev)
    lake.register_files(con, "_main_only", table, sorted(main_files - dev_files), snapshot_id=main)
    return _compare(con, table, main, dev, ahead, main_schema, dev_schema)


def metadata_diff(
    con: duckdb.DuckDBPyConnection,
    table: str,
    metadata: dict[str, Any],
    main: int,
    dev: int,
    manifests: dict[str, list[str]] | None = None,
) -> TableDiff:
    """branch_diff of one table whose dev head is not its main head, read from its metadata.json and Avro
    manifests (engine.lake.manifest_files) instead of pyiceberg: the same files, schemas and rows, so the
    same answer. `con` is a connection of engine.lake.views.connect in the user's zone; `manifests` caches
    manifests across tables. Raises Unreadable when that reading cannot answer exactly (branch_diff
    does, or says what is wrong), diverged branches included.
    """
    ancestors = lineage(metadata, dev)
    if main not in ancestors:
        raise Unreadable(f"main of {table} is not an ancestor of its dev")
    dev_files = set(snapshot_files(metadata, dev, manifests))
    main_files = set(snapshot_files(metadata, main, manifests))
    dev_schema = snapshot_schema(metadata, dev)
    main_schema = snapshot_schema(metadata, main)
    for view, schema, files in (
        ("_dev_only", dev_schema, dev_files - main_files),
        ("_main_only", main_schema, main_files - dev_files),
    ):
        create_view(con, view, select_sql(con, duckdb_columns(schema), sorted(files)))
    return _compare(con, table, main, dev, ancestors.index(main), main_schema, dev_schema)


def _compare(
    con: duckdb.DuckDBPyConnection,
    table: str,
    main: int | None,
    dev: int,
    ahead: int,
    main_schema: dict[str, str],
    dev_schema: dict[str, str],
) -> TableDiff:
    """The diff of the rows of views _dev_only and _main_only (the files only one head holds), and of the
    two heads' schemas (column name -> Iceberg type name)."""
    common = [c for c in dev_schema if c in main_schema and c not in BOOKKEEPING_COLUMNS]
    cols = ", ".join(f'"{c}"' for c in common)
    # Tables, not views: each difference is computed once, then counted and its days listed.
    con.execute(
        f"create or replace temp table _added as select {cols} from _dev_only except all select {cols} from _main_only"
    )
    con.execute(
        f"create or replace temp table _removed as select {cols} from _main_only except all select {cols} from _dev_only"
    )
    added = _scalar(con, "select count(*) from _added")
    removed = _scalar(con, "select count(*) from _removed")
    days: tuple[str, ...] = ()
    day_column = next((c for c in _DAY_COLUMNS if c in common), None)
    if day_column is not None:
        expression = (
            f'"{day_column}"::date'
            if day_column != "reading_ts"
            else "timezone(getvariable('phlo_timezone'), reading_ts)::date"
        )
        rows = con.sql(
            f"select distinct {expression} as d from (select * from _added union all select * from _removed) "
            "where d is not null order by d"
        ).fetchall()
        days = tuple(str(r[0]) for r in rows)
    changes = tuple(
        [f"added {c} {t}" for c, t in dev_schema.items() if c not in main_schema]
        + [f"removed {c}" for c in main_schema if c not in dev_schema]
        + [
            f"{c}: {main_schema[c]} -> {t}"
            for c, t in dev_schema.items()
            if c in main_schema and main_schema[c] != t
        ]
    )
    return TableDiff(table, main, dev, ahead, added, removed, days, changes)


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.sql(sql).fetchall()
    return int(row[0][0]) if row else 0
