"""Rows made to fit a lake table exactly: the declaration checked against the table, Arrow columns cast to
the table's types (pyiceberg writes need exact types), strings plain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from engine.errors import LakeError
from engine.ingest.tables import TableDef


def _check_declaration(table: Table, tdef: TableDef) -> None:
    """Refuse a stored table whose columns or partitioning differ from its declaration."""

    def columns(schema: Schema) -> list[tuple[str, str, bool]]:
        return [(f.name, str(f.field_type), f.required) for f in schema.fields]

    def partitions(t_schema: Schema, fields: Sequence[Any]) -> list[tuple[str, str]]:
        return [(t_schema.find_column_name(f.source_id) or "", str(f.transform)) for f in fields]

    stored_spec = table.spec().fields
    if columns(table.schema()) != columns(tdef.schema) or partitions(
        table.schema(), stored_spec
    ) != partitions(tdef.schema, tdef.partition_spec.fields):
        raise LakeError(
            f"lake table {tdef.name} exists with other columns or partitioning than declared",
            "the lake was written by another version of phlo-tui; move the lake directory aside "
            "and run a backfill",
        )


def _conform(batch: pa.Table, schema: pa.Schema, table: str) -> pa.Table:
    """`batch` with exactly the Arrow `schema` of lake table `table`; casts only when no value changes.

    Missing nullable columns become nulls. Unknown columns, missing required columns, nulls in
    required columns, lossy casts and timestamps without a time zone raise LakeError.
    """
    unknown = sorted(set(batch.column_names) - set(schema.names))
    if unknown:
        raise LakeError(
            f"batch for {table} has columns the table does not have: {', '.join(unknown)}",
            "map or drop them before writing, or declare them in engine/ingest/tables.py",
        )
    columns = []
    for field in schema:
        if field.name not in batch.column_names:
            if not field.nullable:
                raise LakeError(
                    f"batch for {table} lacks required column {field.name!r}",
                    "fill the column before writing",
                )
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch[field.name]
        if column.type != field.type:
            column = _cast(column, field, table)
        if not field.nullable and column.null_count:
            raise LakeError(
                f"batch for {table} has {column.null_count} null(s) in required column {field.name!r}",
                "validation should have quarantined these rows; check the schema in schemas/",
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, table: str) -> pa.ChunkedArray:
    naive_to_zoned = (
        pa.types.is_timestamp(column.type)
        and column.type.tz is None
        and pa.types.is_timestamp(field.type)
        and field.type.tz is not None
    )
    if naive_to_zoned:
        raise LakeError(
            f"column {field.name!r} of the batch for {table} is a timestamp without time zone",
            "localise it (e.g. to UTC) before writing; the lake stores instants",
        )
    try:
        return column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise LakeError(
            f"column {field.name!r} of the batch for {table} cannot be stored as {field.type} "
            f"(it is {column.type}): {e}",
            "convert the values before writing; only lossless casts are made",
        ) from e


def _plain_strings(arrow: pa.Table) -> pa.Table:
    """pyiceberg returns large_string for some scans and string for others; always use string."""
    schema = _plain_string_schema(arrow.schema)
    return arrow.cast(schema) if schema != arrow.schema else arrow


def _plain_string_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [field.with_type(pa.string()) if pa.types.is_large_string(field.type) else field for field in schema]
    )


def _arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema rows of a lake table are written with (plain strings, no field ids)."""
    return _plain_string_schema(schema.as_arrow()).remove_metadata()
