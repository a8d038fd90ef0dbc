"""Incremental publish: when a table's published snapshot is still in the lake, only the rows of the data files
that changed since then are copied to PostgreSQL, in the same transaction as the other tables' swap.

The lake rewrites whole partitions (a merge, an incremental model), so the rows that differ between two
snapshots of a table are in the files one has and the other lacks. The published table is brought from the
old snapshot's rows to the new one's by deleting the rows keyed in the old snapshot's own files (and, for a
`days=` publication, the days that left the window) and inserting the rows of the new snapshot's own files.
Everything else (a new schema, the window moving back, an expired snapshot, a table rewritten whole) is a
full copy and swap, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql

from engine.errors import LakeError
from engine.lake.store import Lake
from engine.publish.publications import API_SCHEMA, META_SCHEMA, Publication

DAY_COLUMN = "reading_date"
"""The column a `days=` publication's window is counted in (engine.publish.publications)."""


@dataclass(frozen=True)
class Increment:
    """What changes in the published table: `gone` holds the key columns of the rows to delete (the old
    snapshot's own rows); `cutoff`, for a `days=` publication, the last day that leaves the window."""

    previous_snapshot: int
    gone: pa.Table
    cutoff: date | None


def plan_increment(
    lake: Lake, con: duckdb.DuckDBPyConnection, pub: Publication, previous: int, snapshot: int
) -> tuple[Increment, pa.Table] | None:
    """The increment from published snapshot `previous` to `snapshot`, with the rows to insert (unsorted,
    newest `days` only); None when only a full copy is right (see the module's docstring)."""
    table = pub.lake_table
    try:
        if lake.snapshot_schema(table, previous) != lake.snapshot_schema(table, snapshot):
            return None
        old_files = set(lake.snapshot_files(table, previous))
        new_files = set(lake.snapshot_files(table, snapshot))
    except LakeError:
        return None  # the published snapshot was expired, say
    if not old_files & new_files:
        return None  # rewritten whole: the swap copies as much and rebuilds the key once
    cutoff = None
    if pub.days is not None:
        lake.register_files(con, "publish_old_all", table, sorted(old_files), snapshot_id=previous)
        lake.register_files(con, "publish_new_all", table, sorted(new_files), snapshot_id=snapshot)
        newest_old = _scalar(con, f"select max({DAY_COLUMN}) from publish_old_all")
        newest = _scalar(con, f"select max({DAY_COLUMN}) from publish_new_all")
        if newest is None or newest_old is None or newest < newest_old:
            return None  # the window would take back days the published table no longer has
        cutoff = newest - timedelta(days=pub.days)
    lake.register_files(con, "publish_added", table, sorted(new_files - old_files), snapshot_id=snapshot)
    lake.register_files(con, "publish_gone", table, sorted(old_files - new_files), snapshot_id=previous)
    keys = ", ".join(f'"{k}"' for k in pub.key)
    gone = con.sql(f"select {keys} from publish_gone").to_arrow_table()
    if cutoff is None:
        rows = con.sql("select * from publish_added").to_arrow_table()
    else:
        rows = con.sql(
            f"select * from publish_added where {DAY_COLUMN} > $cutoff", params={"cutoff": cutoff}
        ).to_arrow_table()
    return Increment(previous, gone, cutoff), rows


def _scalar(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    rows = con.sql(query).fetchall()
    return rows[0][0] if rows else None


def gone_table(target_table: str) -> sql.Identifier:
    """The staging table of the keys to delete, next to the staging table of the rows to insert."""
    return sql.Identifier(META_SCHEMA, f"{target_table}__gone")


def apply_increment(
    conn: psycopg.Connection[Any],
    pub: Publication,
    increment: Increment,
    columns: list[str],
) -> int:
    """Inside the publish transaction, after both staging tables are filled: delete the gone keys and the
    days out of the window from api.<table>, insert the staged rows, drop the staging tables. Returns the
    table's row count."""
    target = sql.Identifier(API_SCHEMA, pub.target_table)
    staging = sql.Identifier(META_SCHEMA, pub.target_table)
    gone = gone_table(pub.target_table)
    conn.execute(
        sql.SQL("delete from {} as t using {} as g where {}").format(
            target,
            gone,
            sql.SQL(" and ").join(
                sql.SQL("t.{} = g.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in pub.key
            ),
        )
    )
    if increment.cutoff is not None:
        conn.execute(
            sql.SQL("delete from {} where {} <= %s").format(target, sql.Identifier(DAY_COLUMN)),
            (increment.cutoff,),
        )
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(sql.SQL("insert into {} ({}) select {} from {}").format(target, names, names, staging))
    conn.execute(sql.SQL("drop table {}, {}").format(staging, gone))
    row = conn.execute(sql.SQL("select count(*) from {}").format(target)).fetchone()
    return int(row[0]) if row else 0
