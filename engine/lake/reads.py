"""Reading the lake: branch heads and history, data files, Arrow tables, DuckDB views, schemas."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    AlwaysTrue,
    BooleanExpression,
)
from pyiceberg.table.snapshots import ancestors_of

from engine.errors import LakeError
from engine.lake.access import LakeAccess
from engine.lake.catalog import _head
from engine.lake.conform import (
    _plain_strings,
)
from engine.lake.files import (
    _columns,
    _files,
    _ident,
    _local_path,
    _partition_files,
    _select_sql,
    _snapshot_schema,
)
from engine.lake.housekeeping import SnapshotInfo
from engine.lake.scratch import scratch
from engine.lake.views import Column, create_view


class LakeReads(LakeAccess):
    """What a branch or a snapshot of a table holds, read without writing."""

    def snapshot_id(self, name: str, branch: str) -> int | None:
        """The snapshot at the head of `branch`, or None when the table or the branch does not exist.

        Raises LakeError when the catalog cannot be read.
        """
        with self._boundary(f"reading the head of branch {branch} of {name}"):
            try:
                table = self._load_table(name)
            except NoSuchTableError:
                return None
            snapshot = table.metadata.snapshot_by_name(branch)
        return snapshot.snapshot_id if snapshot is not None else None

    def history(self, name: str, branch: str) -> list[SnapshotInfo]:
        """Ancestors of the head of `branch`, newest first. Raises LakeError for a missing branch."""
        with self._boundary(f"reading the history of branch {branch} of {name}"):
            table = self._load(name)
            head = _head(table, name, branch)
            return [
                SnapshotInfo(
                    snapshot_id=snapshot.snapshot_id,
                    parent_id=snapshot.parent_snapshot_id,
                    timestamp_ms=snapshot.timestamp_ms,
                    operation=snapshot.summary.operation.value if snapshot.summary else "",
                    summary=dict(snapshot.summary.additional_properties) if snapshot.summary else {},
                )
                for snapshot in ancestors_of(table.metadata.snapshot_by_id(head), table.metadata)
            ]

    # -- reading -------------------------------------------------------------------------------

    def data_files(
        self, name: str, branch: str, row_filter: BooleanExpression | str | None = None
    ) -> list[str]:
        """Paths of the data files of the head snapshot of `branch` that may hold rows matching `row_filter`.

        Local files are returned as plain paths, other storage as URIs. Files of older snapshots,
        and files written by a merge that never committed, are never returned.
        Raises LakeError for a missing table or branch, or when a file has delete files.
        """
        with self._boundary(f"listing the files of {name} on branch {branch}"):
            table = self._load(name)
            return _files(table, _head(table, name, branch), row_filter)

    def read_arrow(
        self,
        name: str,
        branch: str,
        row_filter: BooleanExpression | str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The rows of the head of `branch` matching `row_filter`, as Arrow (empty with the schema if none).

        Raises LakeError for a missing table, branch or column.
        """
        with self._boundary(f"reading {name} on branch {branch}"):
            table = self._load(name)
            scan = table.scan(
                snapshot_id=_head(table, name, branch),
                row_filter=row_filter if row_filter is not None else AlwaysTrue(),
                selected_fields=tuple(columns) if columns is not None else ("*",),
            )
            return _plain_strings(scan.to_arrow())

    def register_duckdb(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        branch: str,
        *,
        as_name: str | None = None,
        partitions: Iterable[str] | None = None,
        snapshot_id: int | None = None,
        current_schema: bool = False,
    ) -> None:
        """Create (or replace) a view `as_name` (default: the Iceberg name) over the head of `branch`,
        or over `snapshot_id` when given (a promotion's snapshot of main, say).

        The view reads the snapshot's Parquet files in place, with the columns of the schema the
        snapshot was written with; it does not follow later commits. With `current_schema`, a branch's
        head is read as Iceberg reads a branch, with the table's current schema: columns added since
        (a raw table's new declared columns, before any write) read as null. With `partitions`, only the
        files of those values of the table's identity partition column (whole partitions); an
        unpartitioned table is registered whole.
        Raises LakeError for a missing table, branch or snapshot, or when DuckDB refuses the view.
        """
        with self._boundary(f"registering {name} on branch {branch} in DuckDB"):
            table = self._load(name)
            snapshot = snapshot_id if snapshot_id is not None else _head(table, name, branch)
            files = [f.path for f in _partition_files(table, snapshot, partitions)]
            schema = (
                table.schema()
                if current_schema and snapshot_id is None
                else _snapshot_schema(table, snapshot)
            )
            create_view(con, as_name or name, _select_sql(con, schema, files))

    def column_max(self, name: str, branch: str, column: str) -> Any:
        """The largest non-null value of `column` at the head of `branch` (None when there is none),
        read by DuckDB from that one column of the head's files.
        Raises LakeError for a missing table, branch or column.
        """
        with self._boundary(f"reading the largest {column} of {name} on branch {branch}"):
            table = self._load(name)
            head = _head(table, name, branch)
            schema = _snapshot_schema(table, head)
            if column not in schema.column_names:
                raise LakeError(f"lake table {name} has no column {column!r}", "check the column name")
            files = [f.path for f in _partition_files(table, head, None)]
            with scratch() as con:
                con.execute("SET TimeZone = 'UTC'")
                return con.sql(
                    f"SELECT max({_ident(column)}) FROM ({_select_sql(con, schema, files)})"
                ).fetchall()[0][0]

    def table_exists(self, name: str) -> bool:
        """Whether lake table `name` exists. Raises LakeError when the catalog cannot be read."""
        with self._boundary(f"looking up lake table {name}"):
            return self._catalog().table_exists(name)

    def metadata_location(self, name: str) -> str:
        """Where the table's current metadata.json is (a path, or a URI for other storage), as the
        catalog says. Raises LakeError for a missing table."""
        with self._boundary(f"looking up the metadata of {name}"):
            return _local_path(self._load(name).metadata_location)

    def snapshot_files(self, name: str, snapshot_id: int) -> list[str]:
        """Paths of the data files of snapshot `snapshot_id` (see data_files).

        Raises LakeError for a missing table or snapshot, or when a file has delete files.
        """
        with self._boundary(f"listing the files of snapshot {snapshot_id} of {name}"):
            table = self._load(name)
            _snapshot_schema(table, snapshot_id)
            return [f.path for f in _partition_files(table, snapshot_id, None)]

    def snapshot_schema(self, name: str, snapshot_id: int) -> dict[str, str]:
        """Column name -> Iceberg type name ('long', 'timestamptz', ...) of the schema `snapshot_id`
        was written with, in column order. Raises LakeError for a missing table or snapshot."""
        with self._boundary(f"reading the schema of snapshot {snapshot_id} of {name}"):
            schema = _snapshot_schema(self._load(name), snapshot_id)
            return {field.name: str(field.field_type) for field in schema.fields}

    def snapshot_columns(self, name: str, snapshot_id: int) -> list[Column]:
        """(name, DuckDB type) of the columns of the schema `snapshot_id` was written with, in order: what
        a view over its files selects. Raises LakeError for a missing table or snapshot."""
        with self._boundary(f"reading the schema of snapshot {snapshot_id} of {name}"):
            return _columns(_snapshot_schema(self._load(name), snapshot_id))
