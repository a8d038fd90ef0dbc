"""Which data files a snapshot holds, per month partition, planned from its manifests once and remembered,
and how DuckDB reads them (local paths, typed SELECT over Parquet)."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
from pyiceberg.expressions import (
    AlwaysTrue,
    BooleanExpression,
    In,
    Reference,
)
from pyiceberg.expressions.literals import literal
from pyiceberg.manifest import DataFile
from pyiceberg.schema import Schema
from pyiceberg.table import DataScan, FileScanTask, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from engine.errors import LakeError
from engine.lake.manifest_cache import live_data_files
from engine.lake.scratch import scratch
from engine.lake.views import Column, select_sql

_DUCKDB_TYPES: dict[type, str] = {
    BooleanType: "BOOLEAN",
    DateType: "DATE",
    FloatType: "FLOAT",
    TimestampType: "TIMESTAMP",
    StringType: "VARCHAR",
    LongType: "BIGINT",
    IntegerType: "INTEGER",
    DoubleType: "DOUBLE",
    TimestamptzType: "TIMESTAMPTZ",
}


def _optional(schema: pa.Schema) -> pa.Schema:
    """Model tables hold whatever SQL returns: no column is required."""
    return pa.schema([field.with_nullable(True) for field in schema])


def _snapshot_schema(table: Table, snapshot_id: int) -> Schema:
    """The schema `snapshot_id` was written with; a missing snapshot is a LakeError."""
    snapshot = table.metadata.snapshot_by_id(snapshot_id)
    if snapshot is None:
        raise LakeError(
            f"snapshot {snapshot_id} of lake table {'.'.join(table.name())} does not exist",
            "it may have been expired; refresh and use a current snapshot",
        )
    if snapshot.schema_id is None:
        return table.schema()
    return table.schemas().get(snapshot.schema_id, table.schema())


def _partition_column(table: Table) -> str | None:
    """The source column of the table's identity partition, if it has one."""
    for field in table.spec().fields:
        if isinstance(field.transform, IdentityTransform):
            return table.schema().find_column_name(field.source_id)
    return None


def _is_in(column: str, values: Sequence[str]) -> BooleanExpression:
    return In(term=Reference(column), values={literal(v) for v in values})


@dataclass(frozen=True)
class _StoredFile:
    """A data file of a snapshot: its path, its value of the table's identity partition column (None
    for an unpartitioned table) and its row count."""

    path: str
    partition: str | None
    rows: int
    file: DataFile = dataclasses.field(compare=False, repr=False)


_UNKNOWN_PARTITION = object()


_PLANNED_MAX = 512


_planned: OrderedDict[tuple[str, str, int], tuple[tuple[_StoredFile, object], ...]] = OrderedDict()


_planned_lock = threading.Lock()


def _partition_files(table: Table, snapshot_id: int, partitions: Iterable[str] | None) -> list[_StoredFile]:
    """The data files of one snapshot, or of some values of its identity partition column.

    A snapshot's files never change, so each snapshot is planned from its manifests once per
    process (pyiceberg reads and filters every manifest on each plan, several times per model).
    Files of another partition spec than the current one are told apart by pyiceberg instead.
    """
    key = _plan_key(table, snapshot_id)
    with _planned_lock:
        entries = _planned.get(key)
        if entries is not None:
            _planned.move_to_end(key)
    if entries is None:
        column = _partition_column(table)
        spec = table.spec()
        position = next(
            (i for i, f in enumerate(spec.fields) if isinstance(f.transform, IdentityTransform)), None
        )
        planned = []
        for path, file in _planned_files(table, snapshot_id, None):
            value: object = None
            if column is not None:
                value = _UNKNOWN_PARTITION
                if file.spec_id == spec.spec_id and position is not None:
                    found = file.partition[position]
                    value = found if isinstance(found, str) or found is None else _UNKNOWN_PARTITION
            stored = _StoredFile(path, value if isinstance(value, str) else None, file.record_count, file)
            planned.append((stored, value))
        entries = tuple(planned)
        with _planned_lock:
            _planned[key] = entries
            while len(_planned) > _PLANNED_MAX:
                _planned.popitem(last=False)
    if partitions is None:
        return [stored for stored, _ in entries]
    wanted = set(partitions)
    column = _partition_column(table)
    if column is None:
        return [stored for stored, _ in entries]
    if any(value is _UNKNOWN_PARTITION for _, value in entries):
        return [
            _StoredFile(path, None, file.record_count, file)
            for path, file in _planned_files(table, snapshot_id, _is_in(column, sorted(wanted)))
        ]
    return [stored for stored, value in entries if value in wanted]


def _plan_key(table: Table, snapshot_id: int) -> tuple[str, str, int]:
    # The location too: a lake copied elsewhere has the same table uuids and snapshot ids.
    return (table.location(), str(table.metadata.table_uuid), snapshot_id)


def _remember_files(
    table: Table, parent: int, snapshot_id: int, deleted: list[DataFile], added: list[DataFile]
) -> None:
    """Record the files of a snapshot this process just committed on top of `parent` (when the
    parent's are known): the parent's minus `deleted`, plus `added`, so that it need not be planned."""
    with _planned_lock:
        entries = _planned.get(_plan_key(table, parent))
    if entries is None or any(value is _UNKNOWN_PARTITION for _, value in entries):
        return
    gone = set(deleted)
    kept = [(stored, value) for stored, value in entries if stored.file not in gone]
    position = next(
        (i for i, f in enumerate(table.spec().fields) if isinstance(f.transform, IdentityTransform)), None
    )
    for file in added:
        # pyiceberg sets a file's spec id when it reads it from a manifest; this one was written
        # with the current spec, and deleting it later needs the id.
        file.spec_id = table.spec().spec_id
        value = file.partition[position] if position is not None else None
        if position is not None and not isinstance(value, str):
            return
        kept.append((_StoredFile(_local_path(file.file_path), value, file.record_count, file), value))
    with _planned_lock:
        _planned[_plan_key(table, snapshot_id)] = tuple(kept)
        while len(_planned) > _PLANNED_MAX:
            _planned.popitem(last=False)


def _planned_files(
    table: Table, snapshot_id: int, row_filter: BooleanExpression | str | None
) -> list[tuple[str, DataFile]]:
    if row_filter is None:
        # Unfiltered: the snapshot's live files straight from the cached manifests, which is what
        # pyiceberg's plan gives without its thread pool and per-file filter evaluation.
        live = live_data_files(table.metadata, table.io, snapshot_id)
        if live is not None:
            return [(_local_path(file.file_path), file) for file in live]
    scan = table.scan(
        snapshot_id=snapshot_id, row_filter=row_filter if row_filter is not None else AlwaysTrue()
    )
    files = []
    for task in scan.plan_files():
        if task.delete_files:
            raise LakeError(
                f"lake table {'.'.join(table.name())} has delete files on {task.file.file_path}",
                "phlo-tui only writes copy-on-write; rewrite the table without merge-on-read deletes",
            )
        files.append((_local_path(task.file.file_path), task.file))
    return files


def _files(table: Table, snapshot_id: int, row_filter: BooleanExpression | str | None) -> list[str]:
    """The data files of one snapshot (planned from its manifests, never by listing directories)."""
    return [path for path, _ in _planned_files(table, snapshot_id, row_filter)]


def _local_path(uri: str) -> str:
    """A file:// URI as the plain path DuckDB reads; other schemes stay URIs."""
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri


def _select_sql(con: duckdb.DuckDBPyConnection, schema: Schema, files: list[str]) -> str:
    """SELECT of the table's columns over `files` (lake_views.select_sql)."""
    return select_sql(con, _columns(schema), files)


def _columns(schema: Schema) -> list[Column]:
    return [(f.name, _duckdb_type(f.field_type)) for f in schema.fields]


def _duckdb_type(field_type: Any) -> str:
    try:
        return _DUCKDB_TYPES[type(field_type)]
    except KeyError:
        raise LakeError(
            f"no DuckDB type for Iceberg type {field_type}",
            "add the type to _DUCKDB_TYPES in engine/lake/store.py",
        ) from None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _planned_tasks(table: Table, metadata: TableMetadata, snapshot_id: int) -> list[FileScanTask]:
    """The scan tasks of one snapshot of `metadata` (which may be a transaction's staged metadata)."""
    tasks = list(DataScan(table_metadata=metadata, io=table.io, snapshot_id=snapshot_id).plan_files())
    for task in tasks:
        if task.delete_files:
            raise LakeError(
                f"lake table {'.'.join(table.name())} has delete files on {task.file.file_path}",
                "phlo-tui only writes copy-on-write; rewrite the table without merge-on-read deletes",
            )
    return tasks


def _fingerprint(schema: Schema, files: list[str]) -> tuple[int, int]:
    """Row count and the sum of a hash of every column of every row: equal for the same multiset of rows."""
    columns = ", ".join(_ident(field.name) for field in schema.fields)
    with scratch() as con:
        select = _select_sql(con, schema, files)
        count, checksum = con.sql(
            f"SELECT count(*), coalesce(sum(hash({columns})::HUGEINT), 0) FROM ({select})"
        ).fetchall()[0]
    return int(count), int(checksum)
