"""Validation of raw Nightscout entries: the lake-ready Arrow batch, quarantine rows, check results."""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from engine.errors import ValidationError
from engine.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE
from schemas.raw import (
    INT32_MAX,
    INT32_MIN,
    NOW_MS_ATTR,
    RAW_GLUCOSE_ENTRIES_SCHEMA,
    SOURCE_KEYS,
    as_integer,
    as_number,
    check_column,
    check_severity,
    is_text,
)

MAX_SAMPLES = 20
ENTRY_IS_OBJECT = "entry_is_object"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP = pa.timestamp("us", tz="UTC")


class Severity(StrEnum):
    """How a failed check acts: an error quarantines the entry, a warning only reports it."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class CheckResult:
    """One check that failed on at least one entry of a batch."""

    check: str
    table: str
    column: str | None
    severity: Severity
    failing_count: int
    samples: tuple[dict[str, Any], ...]
    """Up to `MAX_SAMPLES` failing entries as sent, JSON-safe; a non-object as {"entry": value}."""


@dataclass(frozen=True)
class ValidatedBatch:
    """A validated batch: every input entry is in exactly one of `valid` and `quarantine`."""

    valid: pa.Table
    quarantine: pa.Table
    results: tuple[CheckResult, ...]
    input_count: int


# The schema's column order ranks a row's failed error checks (a row fails at most one error check
# per column): the first names the row's quarantine check.
_COLUMN_RANK = {name: rank for rank, name in enumerate(RAW_GLUCOSE_ENTRIES_SCHEMA.columns)}
# What each check requires, as reasons quote it: the docstrings of the schema's checks.
_RULES: dict[str, str] = {
    ENTRY_IS_OBJECT: "Every entry is a JSON object.",
    **{
        f"{name}_not_null": f"{name} is present."
        for name, column in RAW_GLUCOSE_ENTRIES_SCHEMA.columns.items()
        if not column.nullable
    },
    **{
        f"{name}_{check.name}": str(check.description)
        for name, column in RAW_GLUCOSE_ENTRIES_SCHEMA.columns.items()
        for check in column.checks
    },
    **{check.name: str(check.description) for check in RAW_GLUCOSE_ENTRIES_SCHEMA.checks},
}


def validate_glucose_entries(
    entries: Sequence[object],
    *,
    run_id: str,
    source: str,
    now: datetime,
    ingested_at: datetime | None = None,
) -> ValidatedBatch:
    """Validate raw Nightscout entries against `schemas.raw.RawGlucoseEntries`.

    Returns the entries that pass every error check as an Arrow table of exactly
    `GLUCOSE_ENTRIES.arrow_schema` (input order, unknown keys dropped, values that fail a warning
    check stored as null where the lake type cannot hold them), one `GLUCOSE_QUARANTINE` row per
    other entry, and a `CheckResult` for every check that failed at least once. `now` is the
    clock for the "not in the future" check; `ingested_at` (default `now`) stamps the rows.
    `source` is stored with quarantine rows as given: pass a URL without its query string.

    Raises ValidationError when the clocks are not timezone-aware or the schema itself could not
    run (never because entries are bad: bad entries go to quarantine).
    """
    stamp = now if ingested_at is None else ingested_at
    if now.tzinfo is None or stamp.tzinfo is None:
        raise ValidationError(
            "validating glucose entries needs timezone-aware clocks",
            "pass now (and ingested_at) as datetime with tzinfo, e.g. datetime.now(UTC)",
        )
    try:
        return _validate(entries, run_id, source, now, stamp)
    except UnicodeEncodeError:
        # A JSON "\ud800" escape decodes to a lone surrogate, which UTF-8 (Arrow, Parquet) cannot
        # hold: rare, so only then is every string of the batch cleaned, instead of failing it whole.
        return _validate([_without_surrogates(e) for e in entries], run_id, source, now, stamp)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: object) -> object:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD, as a UTF-8
    decoder replaces bytes it cannot read."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _validate(
    entries: Sequence[object], run_id: str, source: str, now: datetime, stamp: datetime
) -> ValidatedBatch:
    objects: list[int] = []
    non_objects: list[int] = []
    for position, entry in enumerate(entries):
        (objects if isinstance(entry, dict) else non_objects).append(position)
    frame = _raw_frame([entries[i] for i in objects], objects, _epoch_us(now) // 1000)
    failures = _non_object_failures(non_objects) + _schema_failures(frame)
    errors: dict[int, list[_Failure]] = {}
    for failure in failures:
        if failure.severity is Severity.ERROR:
            errors.setdefault(failure.position, []).append(failure)
    valid = frame[~frame.index.isin(list(errors))] if errors else frame
    return ValidatedBatch(
        valid=_valid_table(valid, run_id, stamp),
        quarantine=_quarantine_table(errors, entries, frame, run_id, source, stamp),
        results=_check_results(failures, entries),
        input_count=len(entries),
    )


class _Failure(NamedTuple):
    position: int
    check: str
    column: str | None
    severity: Severity


def _rank(check: str, column: str | None) -> tuple[int, str]:
    return _COLUMN_RANK.get(column, -1) if column else -1, check


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _raw_frame(objects: list[Any], positions: list[int], now_ms: int) -> pd.DataFrame:
    """The entry objects as one column per lake column, indexed by input position."""
    present: set[object] = set().union(*objects)
    keys = [key for keys in SOURCE_KEYS.values() for key in keys if key in present]
    index = pd.Index(positions, dtype="int64")
    # dtype=object keeps every value as sent (a list stays one value, "5" stays a string).
    source = pd.DataFrame(objects, columns=keys, index=index, dtype=object)
    columns: dict[str, pd.Series] = {}
    for column, column_keys in SOURCE_KEYS.items():
        found = [key for key in column_keys if key in present]
        values = source[found[0]] if found else pd.Series(np.nan, index=index)
        for key in found[1:]:  # the first key holding a value wins: camelCase, then snake_case
            values = values.where(values.notna(), source[key])
        columns[column] = _narrowed(values)
    frame = pd.DataFrame(columns)
    frame.attrs[NOW_MS_ATTR] = now_ms
    return frame


def _narrowed(values: pd.Series) -> pd.Series:
    """A column whose values are all numbers (or all strings) as float64 (or str), else as sent.

    The values stay what was sent (float64 is exact for every valid integer), and the checks get
    vectorised null tests instead of per-object scans.
    """
    kind = infer_dtype(values, skipna=True)
    if kind == "string":
        return values.astype("str")
    if kind in ("integer", "floating", "mixed-integer-float", "empty"):
        try:
            return values.astype("float64")
        except OverflowError:  # an integer beyond float64 (10**400) stays raw for the checks
            return values
    return values


def _schema_failures(frame: pd.DataFrame) -> list[_Failure]:
    """One failure per (entry position, failed check) from a lazy pandera validation."""
    # Explicit settings: PANDERA_VALIDATION_ENABLED or a SCHEMA_ONLY depth in the environment
    # would otherwise skip the data checks and let every entry through.
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            RAW_GLUCOSE_ENTRIES_SCHEMA.validate(frame, lazy=True, inplace=True)
        except SchemaErrors as failed:
            cases = failed.failure_cases
        else:
            return []
    unplaced = cases[cases["index"].isna()]
    if not unplaced.empty:
        broken = sorted(set(unplaced["check"].astype(str)))
        raise ValidationError(
            f"the raw.glucose_entries schema could not run check(s) {', '.join(broken)}",
            "this is a bug in schemas/raw.py or engine/validation.py, not bad data",
        )
    on_column = cases["schema_context"] == "Column"
    # A dataframe-level check reports every column of a failing row: keep one case per row.
    row_cases = cases[~on_column].drop_duplicates(["index", "check"])
    placed = [
        (position, f"{column}_{'not_null' if name == 'not_nullable' else name}", column)
        for position, name, column in zip(
            cases["index"][on_column], cases["check"][on_column], cases["column"][on_column], strict=True
        )
    ] + [
        (position, name, check_column(name))
        for position, name in zip(row_cases["index"], row_cases["check"], strict=True)
    ]
    severities: dict[tuple[str, str | None], Severity] = {}
    failures = []
    for position, check, column in placed:
        if (check, column) not in severities:
            severities[check, column] = Severity(check_severity(check, column))
        failures.append(_Failure(int(position), check, column, severities[check, column]))
    return failures


def _non_object_failures(positions: list[int]) -> list[_Failure]:
    severity = Severity(check_severity(ENTRY_IS_OBJECT, None))
    return [_Failure(position, ENTRY_IS_OBJECT, None, severity) for position in positions]


def _valid_table(valid: pd.DataFrame, run_id: str, stamp: datetime) -> pa.Table:
    count = len(valid)
    date_ms = as_integer(valid["date"]).astype("int64")
    arrays = {
        "_id": _text_array(valid["_id"]),
        "type": _text_array(valid["type"]),
        "date": pa.array(date_ms, pa.int64()),
        "date_string": _text_array(valid["date_string"]),
        "sys_time": _text_array(valid["sys_time"]),
        "utc_offset": _int32_array(valid["utc_offset"]),
        "sgv": _int32_array(valid["sgv"]),
        "mbg": _int32_array(valid["mbg"]),
        "direction": _text_array(valid["direction"]),
        "trend": _int32_array(valid["trend"]),
        "noise": _int32_array(valid["noise"]),
        "filtered": _float_array(valid["filtered"]),
        "unfiltered": _float_array(valid["unfiltered"]),
        "rssi": _int32_array(valid["rssi"]),
        "device": _text_array(valid["device"]),
        "slope": _float_array(valid["slope"]),
        "intercept": _float_array(valid["intercept"]),
        "scale": _float_array(valid["scale"]),
        "reading_ts": pa.array(date_ms * 1000, _TIMESTAMP),
        "reading_month": pa.array(
            np.datetime_as_string(date_ms.astype("datetime64[ms]"), unit="M"), pa.string()
        ),
        "_phlo_ingested_at": pa.array(np.full(count, _epoch_us(stamp), dtype="int64"), _TIMESTAMP),
        "_phlo_run_id": pa.array(np.full(count, run_id, dtype=object), pa.string()),
    }
    schema = GLUCOSE_ENTRIES.arrow_schema
    return pa.Table.from_arrays([arrays[name] for name in schema.names], schema=schema)


def _text_array(values: pd.Series) -> pa.Array:
    return pa.array(values.where(is_text(values)), pa.string(), from_pandas=True)


def _int32_array(values: pd.Series) -> pa.Array:
    numbers = as_integer(values)
    fits = (numbers >= INT32_MIN) & (numbers <= INT32_MAX)
    return pa.array(np.where(fits, numbers, 0).astype("int32"), pa.int32(), mask=~fits)


def _float_array(values: pd.Series) -> pa.Array:
    numbers = as_number(values)
    return pa.array(numbers, pa.float64(), mask=np.isnan(numbers))


def _quarantine_table(
    errors: dict[int, list[_Failure]],
    entries: Sequence[object],
    frame: pd.DataFrame,
    run_id: str,
    source: str,
    stamp: datetime,
) -> pa.Table:
    payloads = {position: _payload_json(entries[position]) for position in sorted(errors)}
    duplicates = _duplicate_notes(
        frame,
        entries,
        payloads,
        [position for position, failed in errors.items() if any(f.check == "_id_unique" for f in failed)],
    )
    rows: dict[str, list[Any]] = {name: [] for name in GLUCOSE_QUARANTINE.arrow_schema.names}
    for position, payload in payloads.items():
        failed = sorted(errors[position], key=lambda failure: _rank(failure.check, failure.column))
        entry = entries[position]
        entry_id = entry.get("_id") if isinstance(entry, dict) else None
        reasons = [_explain(failure.check, failure.column, entry) for failure in failed]
        if position in duplicates:
            reasons = [
                f"{reason} ({duplicates[position]})" if failure.check == "_id_unique" else reason
                for reason, failure in zip(reasons, failed, strict=True)
            ]
        rows["run_id"].append(run_id)
        rows["entry_id"].append(entry_id if isinstance(entry_id, str) else None)
        rows["check"].append(failed[0].check)
        rows["column"].append(failed[0].column)
        rows["severity"].append(Severity.ERROR.value)
        rows["reason"].append("; ".join(reasons))
        rows["payload"].append(payload)
        rows["source"].append(source)
        rows["quarantined_at"].append(stamp)
    return pa.Table.from_pydict(rows, schema=GLUCOSE_QUARANTINE.arrow_schema)


def _explain(check: str, column: str | None, entry: object) -> str:
    """`<check>: <column>=<value as sent> fails "<rule>"`."""
    if column is None:
        shown = f"entry={_short_json(entry)}"
    else:
        assert isinstance(entry, dict)  # only entry_is_object fails on non-objects
        keys = [key for key in SOURCE_KEYS[column] if key in entry]
        sent = next((entry[key] for key in keys if entry[key] is not None), None)
        shown = f"{column}={_short_json(sent)}" if keys else f"{column} missing"
    return f'{check}: {shown} fails "{_RULES[check]}"'


def _duplicate_notes(
    frame: pd.DataFrame, entries: Sequence[object], payloads: dict[int, str], positions: list[int]
) -> dict[int, str]:
    """For each later copy of an _id: which entry it repeats and whether the content differs."""
    if not positions:
        return {}
    first_copy: dict[str, int] = {}
    for position, entry_id in zip(frame.index, frame["_id"], strict=True):
        if isinstance(entry_id, str):
            first_copy.setdefault(entry_id, int(position))
    first_payloads: dict[int, str] = {}
    notes = {}
    for position in positions:
        entry = entries[position]
        assert isinstance(entry, dict)  # only string ids can be duplicates
        first = first_copy[entry["_id"]]
        if first not in first_payloads:
            first_payloads[first] = payloads.get(first) or _payload_json(entries[first])
        kind = "exact" if first_payloads[first] == payloads[position] else "conflicting"
        notes[position] = f"{kind} duplicate of the entry at position {first}"
    return notes


def _check_results(failures: list[_Failure], entries: Sequence[object]) -> tuple[CheckResult, ...]:
    positions_by_check: dict[tuple[str, str | None, Severity], list[int]] = {}
    for failure in failures:
        key = (failure.check, failure.column, failure.severity)
        positions_by_check.setdefault(key, []).append(failure.position)
    return tuple(
        CheckResult(
            check=check,
            table=GLUCOSE_ENTRIES.name,
            column=column,
            severity=severity,
            failing_count=len(positions),
            samples=tuple(_sample(entries[i]) for i in heapq.nsmallest(MAX_SAMPLES, positions)),
        )
        for (check, column, severity), positions in sorted(
            positions_by_check.items(), key=lambda item: _rank(item[0][0], item[0][1])
        )
    )


def _json_safe(value: object) -> Any:
    """`value` with everything JSON cannot hold (NaN, non-string keys, objects) repr'd."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {key if isinstance(key, str) else repr(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return repr(value)


def _safe_or_placeholder(value: object) -> Any:
    try:
        return _json_safe(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to serialise>"


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _payload_json(entry: object) -> str:
    """Compact JSON of an entry; what JSON cannot hold is repr'd so the text always parses."""
    try:
        return _COMPACT_JSON.encode(entry)
    except (TypeError, ValueError, RecursionError):  # NaN, objects, cycles, absurd nesting
        return _COMPACT_JSON.encode(_safe_or_placeholder(entry))


def _short_json(value: object, limit: int = 80) -> str:
    text = _payload_json(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sample(entry: object) -> dict[str, Any]:
    safe = _safe_or_placeholder(entry)
    return safe if isinstance(entry, dict) and isinstance(safe, dict) else {"entry": safe}
