"""Validated records as Arrow columns in the raw tables' exact types (pyiceberg writes need them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from schemas.raw import (
    INT32_MAX,
    INT32_MIN,
    as_integer,
    as_number,
    is_boolean,
    is_text,
)

if TYPE_CHECKING:
    from engine.ingest.validation import RawSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP = pa.timestamp("us", tz="UTC")


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _lake_table(spec: RawSpec, valid: pd.DataFrame, run_id: str, stamp: datetime) -> pa.Table:
    """The valid records as exactly `spec.table.arrow_schema`."""
    count = len(valid)
    time_ms = spec.time_ms(valid[spec.time.name]).astype("int64")
    derived = {
        spec.time_column: pa.array(time_ms * 1000, _TIMESTAMP),
        "_phlo_ingested_at": pa.array(np.full(count, _epoch_us(stamp), dtype="int64"), _TIMESTAMP),
        "_phlo_run_id": pa.array(np.full(count, run_id, dtype=object), pa.string()),
    }
    if spec.table.partition_column is not None:
        months = np.datetime_as_string(time_ms.astype("datetime64[ms]"), unit="M")
        derived[spec.table.partition_column] = pa.array(months, pa.string())
    schema = spec.table.arrow_schema
    arrays = [derived[f.name] if f.name in derived else _ARRAYS[f.type](valid[f.name]) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _text_array(values: pd.Series) -> pa.Array:
    return pa.array(values.where(is_text(values)), pa.string(), from_pandas=True)


def _int32_array(values: pd.Series) -> pa.Array:
    numbers = as_integer(values)
    fits = (numbers >= INT32_MIN) & (numbers <= INT32_MAX)
    return pa.array(np.where(fits, numbers, 0).astype("int32"), pa.int32(), mask=~fits)


def _int64_array(values: pd.Series) -> pa.Array:
    numbers = as_integer(values)
    missing = np.isnan(numbers)
    return pa.array(np.where(missing, 0, numbers).astype("int64"), pa.int64(), mask=missing)


def _float_array(values: pd.Series) -> pa.Array:
    numbers = as_number(values)
    return pa.array(numbers, pa.float64(), mask=np.isnan(numbers))


def _bool_array(values: pd.Series) -> pa.Array:
    flags = is_boolean(values)
    return pa.array(np.where(flags, values.to_numpy(dtype=object) == True, False), pa.bool_(), mask=~flags)  # noqa: E712


_ARRAYS = {
    pa.bool_(): _bool_array,
    pa.string(): _text_array,
    pa.int32(): _int32_array,
    pa.int64(): _int64_array,
    pa.float64(): _float_array,
}
