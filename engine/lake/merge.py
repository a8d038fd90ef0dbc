"""The month-partition merge: which stored rows an incoming batch changes, found in DuckDB over the
partition's files, so that only touched partitions are rewritten and an unchanged batch writes nothing."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import (
    And,
    GreaterThanOrEqual,
    LessThanOrEqual,
    Not,
    Reference,
)
from pyiceberg.expressions.literals import literal
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from engine.ingest.tables import TableDef
from engine.lake.bookkeeping import BOOKKEEPING_COLUMNS
from engine.lake.files import (
    _files,
    _ident,
    _is_in,
    _partition_column,
    _partition_files,
    _select_sql,
)
from engine.lake.scratch import scratch


@dataclass(frozen=True)
class _MergePlan:
    """The outcome of comparing a batch with the stored partitions, before anything is written."""

    rows: pa.Table
    changed: tuple[str, ...]
    inserted: int
    updated: int
    unchanged: int


def _plan_merge(
    table: Table,
    tdef: TableDef,
    head: int,
    incoming: pa.Table,
    key_column: str,
    partition_column: str,
    *,
    time_keyed: bool = False,
) -> _MergePlan:
    """Read the partitions the batch touches and compute their new contents in DuckDB (`time_keyed`:
    see Lake.merge)."""
    key, part = _ident(key_column), _ident(partition_column)
    touched = sorted(pc.unique(incoming[partition_column]).to_pylist())
    identity = _partition_column(table) == partition_column

    def partition_files(values: list[str]) -> list[str]:
        if identity:
            return [f.path for f in _partition_files(table, head, values)]
        return _files(table, head, _is_in(partition_column, values))

    stored_files = partition_files(touched)
    near = _neighbour_months(touched) if time_keyed else None
    if near is not None:
        # A key holding its row's local time can only have moved to the month before or after.
        probe_files = partition_files(sorted(near - set(touched)))
    else:
        # Keys are ObjectIds, which start with their time: the key range prunes nearly every other
        # partition by file statistics, so finding keys that moved partition costs little.
        keys = pc.min_max(incoming[key_column])
        probe_files = _files(
            table,
            head,
            And(
                Not(_is_in(partition_column, touched)),
                And(
                    GreaterThanOrEqual(term=Reference(key_column), value=literal(keys["min"].as_py())),
                    LessThanOrEqual(term=Reference(key_column), value=literal(keys["max"].as_py())),
                ),
            ),
        )
    columns = ", ".join(_ident(field.name) for field in tdef.arrow_schema)
    content = [field.name for field in tdef.arrow_schema if field.name not in BOOKKEEPING_COLUMNS]
    same = " AND ".join(f"i.{_ident(c)} IS NOT DISTINCT FROM s.{_ident(c)}" for c in content)
    with scratch() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("batch", incoming.append_column("__order", pa.array(np.arange(incoming.num_rows))))
        con.execute(
            f"CREATE TEMP TABLE incoming AS SELECT {columns} FROM batch "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY __order DESC) = 1"
        )
        con.unregister("batch")
        if probe_files:
            con.execute(f"CREATE TEMP VIEW probe AS {_select_sql(con, table.schema(), probe_files)}")
            moved_from = [
                row[0]
                for row in con.sql(
                    f"SELECT DISTINCT {part} FROM probe SEMI JOIN incoming USING ({key})"
                ).fetchall()
            ]
            if moved_from:
                stored_files += partition_files(moved_from)
        con.execute(f"CREATE TEMP VIEW stored AS {_select_sql(con, table.schema(), stored_files)}")
        con.execute(
            f"CREATE TEMP TABLE matched AS SELECT i.{key} AS key, s.{part} AS old_part, "
            f"CASE WHEN s.{key} IS NULL THEN 'insert' WHEN {same} THEN 'unchanged' "
            f"ELSE 'update' END AS change FROM incoming i LEFT JOIN stored s ON i.{key} = s.{key}"
        )
        counts = dict(con.sql("SELECT change, count(*) FROM matched GROUP BY change").fetchall())
        # A partition changes when a row enters it, or when an updated row leaves it for another.
        con.execute(
            f"CREATE TEMP TABLE changed AS SELECT i.{part} AS part FROM incoming i "
            f"JOIN matched m ON i.{key} = m.key WHERE m.change <> 'unchanged' "
            "UNION SELECT old_part FROM matched WHERE change = 'update'"
        )
        changed = tuple(row[0] for row in con.sql("SELECT part FROM changed ORDER BY 1").fetchall())
        rows = con.sql(
            f"SELECT {columns} FROM ("
            f"SELECT {columns} FROM stored ANTI JOIN matched m "
            f"ON stored.{key} = m.key AND m.change <> 'unchanged' "
            f"UNION ALL SELECT {columns} FROM incoming SEMI JOIN matched m "
            f"ON incoming.{key} = m.key AND m.change <> 'unchanged'"
            f") WHERE {part} IN (SELECT part FROM changed)"
        ).to_arrow_table()
    return _MergePlan(
        rows=rows,
        changed=changed,
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        unchanged=counts.get("unchanged", 0),
    )


def _neighbour_months(months: list[str]) -> set[str] | None:
    """The YYYY-MM months before and after each of `months`; None when one is not YYYY-MM."""
    near: set[str] = set()
    for month in months:
        if not _MONTH.fullmatch(month):
            return None
        index = int(month[:4]) * 12 + int(month[5:]) - 1
        near.update(f"{i // 12:04d}-{i % 12 + 1:02d}" for i in (index - 1, index + 1))
    return near


_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


_ARROW_COMPARE_MAX_ROWS = 50_000


def _same_rows(schema: Schema, files: list[str], rows: pa.Table) -> bool:
    """Whether `files` hold exactly `rows` (as a multiset, bookkeeping included)."""
    if not files:
        return rows.num_rows == 0
    if rows.num_rows <= _ARROW_COMPARE_MAX_ROWS:
        same = _same_sorted(files, rows)
        if same is not None:
            return same
    with scratch() as con:
        con.register("incoming", rows)
        con.execute(f"CREATE TEMP VIEW stored AS {_select_sql(con, schema, files)}")
        (stored_rows,) = con.sql("SELECT count(*) FROM stored").fetchall()[0]
        if stored_rows != rows.num_rows:
            return False
        columns = ", ".join(_ident(name) for name in rows.column_names)
        (missing,) = con.sql(
            f"SELECT count(*) FROM (SELECT {columns} FROM incoming EXCEPT ALL SELECT {columns} FROM stored)"
        ).fetchall()[0]
        return bool(missing == 0)


def _same_sorted(files: list[str], rows: pa.Table) -> bool | None:
    """`_same_rows` in Arrow, both sides sorted by every column: for the small tables of the
    hourly run, cheaper than a DuckDB query. None when Arrow cannot decide (a file without some
    column, a type it cannot cast or sort); a NaN compares unequal, which only costs a write."""
    try:
        stored = pa.concat_tables([pq.read_table(path) for path in files], promote_options="permissive")
        if set(stored.column_names) != set(rows.column_names):
            return None
        stored = stored.select(rows.column_names).cast(rows.schema)
        order = [(name, "ascending") for name in rows.column_names]
        return bool(stored.sort_by(order).equals(rows.sort_by(order)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
