"""engine.lake.schema_check: pyiceberg's write-time schema check skipped only for the table's own
schema; every other schema, compatible or not, gets pyiceberg's verdict and message unchanged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.io import pyarrow as pyiceberg_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from engine.ingest.tables import GLUCOSE_ENTRIES
from engine.lake import schema_check
from engine.lake.store import Lake
from tests.test_lake import glucose_rows

TABLE = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "month", StringType(), required=False),
)


@pytest.fixture
def pyiceberg_calls() -> Iterator[list[pa.Schema]]:
    calls: list[pa.Schema] = []
    original = schema_check._pyiceberg_check

    def counting(requested: Schema, provided: pa.Schema, *args: object) -> None:
        calls.append(provided)
        original(requested, provided, *args)  # type: ignore[arg-type]

    schema_check._pyiceberg_check = counting  # type: ignore[assignment]
    try:
        yield calls
    finally:
        schema_check._pyiceberg_check = original


def _both(provided: pa.Schema) -> tuple[str | None, str | None]:
    """The error (or None) of our check and of pyiceberg's own."""
    results: list[str | None] = []
    for check in (schema_check.check_pyarrow_schema_compatible, schema_check._pyiceberg_check):
        try:
            check(TABLE, provided)
            results.append(None)
        except ValueError as e:
            results.append(str(e))
    return results[0], results[1]


def test_the_tables_own_schema_skips_pyiceberg(pyiceberg_calls: list[pa.Schema]) -> None:
    own = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("month", pa.string())])
    schema_check.check_pyarrow_schema_compatible(TABLE, own)
    assert pyiceberg_calls == []


@pytest.mark.parametrize(
    "provided",
    [
        pa.schema([pa.field("id", pa.int32(), nullable=False), pa.field("month", pa.string())]),  # promotable
        pa.schema([pa.field("id", pa.int64(), nullable=False)]),  # an optional column missing
        pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("month", pa.string())]),
        pa.schema([pa.field("id", pa.int64()), pa.field("month", pa.string())]),  # required made optional
        pa.schema(
            [pa.field("id", pa.int64(), nullable=False), pa.field("month", pa.string()), ("x", pa.int8())]
        ),
        pa.schema([pa.field("month", pa.string())]),  # a required column missing
    ],
)
def test_any_other_schema_gets_pyiceberg_verdict(
    provided: pa.Schema, pyiceberg_calls: list[pa.Schema]
) -> None:
    ours, theirs = _both(provided)
    assert ours == theirs
    assert pyiceberg_calls[0] == provided


def test_lake_writes_use_the_shortcut_and_still_refuse_a_mismatch(
    tmp_path: Path, pyiceberg_calls: list[pa.Schema]
) -> None:
    lake = Lake(tmp_path / "lake")
    lake.ensure_table(GLUCOSE_ENTRIES)
    jan = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(jan, 5))
    lake.merge(GLUCOSE_ENTRIES, glucose_rows(jan, 8))
    assert pyiceberg_calls == []
    assert pyiceberg_pyarrow._check_pyarrow_schema_compatible is schema_check.check_pyarrow_schema_compatible
    table = lake._load(GLUCOSE_ENTRIES.name)
    wrong = pa.table({"id": pa.array(["x"])})
    with pytest.raises(ValueError, match=r"more columns|Mismatch"):
        table.append(wrong)
