"""Validation of raw Nightscout records: the lake-ready Arrow batch, quarantine rows, check results."""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.types import infer_dtype
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from engine import fastcheck
from engine.errors import ValidationError
from engine.ingest.nightscout import DATE, TimeField
from engine.ingest.raw_arrays import (
    _epoch_us,
    _lake_table,
)
from engine.ingest.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE, TableDef
from engine.runs.records import Severity
from schemas.raw import (
    NOW_MS_ATTR,
    RAW_GLUCOSE_ENTRIES_SCHEMA,
    SOURCE_KEYS,
    RawGlucoseEntries,
    as_instant_ms,
    as_integer,
)

MAX_SAMPLES = 20
ENTRY_IS_OBJECT = "entry_is_object"


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


@dataclass(frozen=True)
class RawSpec:
    """How one raw source is validated and stored, declared: no code of its own.

    Each lake column named in `source_keys` takes the first of its raw keys that holds a value,
    converted by the column's Arrow type (text, whole numbers, numbers; null where a warning check
    failed and the type cannot hold the value). `time_column` (timestamptz) and the table's
    partition column (its UTC 'YYYY-MM') are derived from the `time` field; `_phlo_ingested_at`
    and `_phlo_run_id` are stamped.
    """

    model: type[Any]
    """The pandera `DataFrameModel` of the raw records (schemas/raw.py); its `Config.metadata`
    names the severity of checks that guard no single column, and their column if any."""
    schema: Any
    """`model.to_schema()`, built once (pandera caches it per thread, and runs use threads)."""
    source_keys: dict[str, tuple[str, ...]]
    table: TableDef
    quarantine: TableDef
    time: TimeField
    time_column: str

    def severity(self, check: str, column: str | None) -> str:
        """Severity of a reported check: named in the model's Config, else its column's."""
        named: dict[str, str] = self.model.Config.metadata["severity"]
        if check in named:
            return named[check]
        if column is None:
            raise KeyError(f"check {check!r} has no severity")
        return str(self.schema.columns[column].metadata["severity"])

    def check_column(self, check: str) -> str | None:
        """Column a dataframe-level check guards, None when it guards none."""
        columns: dict[str, str] = self.model.Config.metadata.get("column", {})
        return columns.get(check)

    def time_ms(self, values: pd.Series) -> np.ndarray:
        """The records' times as epoch ms (float64, NaN where unusable)."""
        return as_instant_ms(values) if self.time.iso else as_integer(values)

    @property
    def column_rank(self) -> dict[str, int]:
        # The schema's column order ranks a row's failed error checks (a row fails at most one
        # error check per column): the first names the row's quarantine check.
        return {name: rank for rank, name in enumerate(self.schema.columns)}

    @property
    def rules(self) -> dict[str, str]:
        """What each check requires, as reasons quote it: the docstrings of the schema's checks."""
        return {
            ENTRY_IS_OBJECT: "Every entry is a JSON object.",
            **{
                f"{name}_not_null": f"{name} is present."
                for name, column in self.schema.columns.items()
                if not column.nullable
            },
            **{
                f"{name}_{check.name}": str(check.description)
                for name, column in self.schema.columns.items()
                for check in column.checks
            },
            **{check.name: str(check.description) for check in self.schema.checks},
        }


GLUCOSE_ENTRIES_SPEC = RawSpec(
    model=RawGlucoseEntries,
    schema=RAW_GLUCOSE_ENTRIES_SCHEMA,
    source_keys=SOURCE_KEYS,
    table=GLUCOSE_ENTRIES,
    quarantine=GLUCOSE_QUARANTINE,
    time=DATE,
    time_column="reading_ts",
)


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
    return validate_records(
        GLUCOSE_ENTRIES_SPEC, entries, run_id=run_id, source=source, now=now, ingested_at=ingested_at
    )


def validate_records(
    spec: RawSpec,
    entries: Sequence[object],
    *,
    run_id: str,
    source: str,
    now: datetime,
    ingested_at: datetime | None = None,
) -> ValidatedBatch:
    """Validate raw records of any declared source against `spec`; the same contract as
    `validate_glucose_entries`, for `spec.table` and `spec.quarantine`."""
    stamp = now if ingested_at is None else ingested_at
    if now.tzinfo is None or stamp.tzinfo is None:
        raise ValidationError(
            f"validating {spec.table.name} needs timezone-aware clocks",
            "pass now (and ingested_at) as datetime with tzinfo, e.g. datetime.now(UTC)",
        )
    try:
        return _validate(spec, entries, run_id, source, now, stamp)
    except UnicodeEncodeError:
        # A JSON "\ud800" escape decodes to a lone surrogate, which UTF-8 (Arrow, Parquet) cannot
        # hold: rare, so only then is every string of the batch cleaned, instead of failing it whole.
        return _validate(spec, [_without_surrogates(e) for e in entries], run_id, source, now, stamp)


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
    spec: RawSpec, entries: Sequence[object], run_id: str, source: str, now: datetime, stamp: datetime
) -> ValidatedBatch:
    objects: list[int] = []
    non_objects: list[int] = []
    for position, entry in enumerate(entries):
        (objects if isinstance(entry, dict) else non_objects).append(position)
    frame = _raw_frame(spec, [entries[i] for i in objects], objects, _epoch_us(now) // 1000)
    failures = _non_object_failures(spec, non_objects) + _schema_failures(spec, frame)
    errors: dict[int, list[_Failure]] = {}
    for failure in failures:
        if failure.severity is Severity.ERROR:
            errors.setdefault(failure.position, []).append(failure)
    valid = frame[~frame.index.isin(list(errors))] if errors else frame
    return ValidatedBatch(
        valid=_lake_table(spec, valid, run_id, stamp),
        quarantine=_quarantine_table(spec, errors, entries, frame, run_id, source, stamp),
        results=_check_results(spec, failures, entries),
        input_count=len(entries),
    )


class _Failure(NamedTuple):
    position: int
    check: str
    column: str | None
    severity: Severity


def _rank(spec: RawSpec, check: str, column: str | None) -> tuple[int, str]:
    return spec.column_rank.get(column, -1) if column else -1, check


def _raw_frame(spec: RawSpec, objects: list[Any], positions: list[int], now_ms: int) -> pd.DataFrame:
    """The entry objects as one column per lake column, indexed by input position."""
    present: set[object] = set().union(*objects)
    # A raw key may feed two columns (API v3's identifier is also the _id it lacks): once here.
    keys = list(dict.fromkeys(key for keys in spec.source_keys.values() for key in keys if key in present))
    index = pd.Index(positions, dtype="int64")
    # dtype=object keeps every value as sent (a list stays one value, "5" stays a string).
    source = pd.DataFrame(objects, columns=keys, index=index, dtype=object)
    text_columns = {field.name for field in spec.table.arrow_schema if field.type == pa.string()}
    columns: dict[str, pd.Series] = {}
    for column, column_keys in spec.source_keys.items():
        found = [key for key in column_keys if key in present]
        values = source[found[0]] if found else pd.Series(np.nan, index=index)
        for key in found[1:]:  # the first key holding a value wins: camelCase, then snake_case
            values = values.where(values.notna(), source[key])
        narrowed = _narrowed(values)
        columns[column] = _without_nul(narrowed) if column in text_columns else narrowed
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


def _without_nul(values: pd.Series) -> pd.Series:
    """The strings of a text column with every U+0000 removed; other values as they are.

    JSON and Iceberg hold NUL, but PostgreSQL text cannot, so a NUL in a device name or a note
    would block publishing for good; dropping the character keeps the reading. Done before the
    checks, so that `_id` uniqueness and the allowed values see the text that is stored.
    """
    if isinstance(values.dtype, pd.StringDtype):
        if not values.str.contains("\x00", regex=False).any():
            return values
        return values.str.replace("\x00", "", regex=False)
    if values.dtype != object:
        return values
    raw = values.to_numpy()
    found = [i for i, value in enumerate(raw) if isinstance(value, str) and "\x00" in value]
    if not found:
        return values
    cleaned = raw.copy()  # still objects: Series.map would infer a dtype (all bools become bool)
    for i in found:
        cleaned[i] = cleaned[i].replace("\x00", "")
    return pd.Series(cleaned, index=values.index, dtype=object)


def _schema_failures(spec: RawSpec, frame: pd.DataFrame) -> list[_Failure]:
    """One failure per (entry position, failed check) from a lazy pandera validation."""
    if fastcheck.passes(spec.schema, frame):  # every entry passes: pandera would find nothing
        return []
    # Explicit settings: PANDERA_VALIDATION_ENABLED or a SCHEMA_ONLY depth in the environment
    # would otherwise skip the data checks and let every entry through.
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            spec.schema.validate(frame, lazy=True, inplace=True)
        except SchemaErrors as failed:
            cases = failed.failure_cases
        else:
            return []
    unplaced = cases[cases["index"].isna()]
    if not unplaced.empty:
        broken = sorted(set(unplaced["check"].astype(str)))
        raise ValidationError(
            f"the {spec.table.name} schema could not run check(s) {', '.join(broken)}",
            "this is a bug in schemas/raw.py or engine/ingest/validation.py, not bad data",
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
        (position, name, spec.check_column(name))
        for position, name in zip(row_cases["index"], row_cases["check"], strict=True)
    ]
    severities: dict[tuple[str, str | None], Severity] = {}
    failures = []
    for position, check, column in placed:
        if (check, column) not in severities:
            severities[check, column] = Severity(spec.severity(check, column))
        failures.append(_Failure(int(position), check, column, severities[check, column]))
    return failures


def _non_object_failures(spec: RawSpec, positions: list[int]) -> list[_Failure]:
    severity = Severity(spec.severity(ENTRY_IS_OBJECT, None))
    return [_Failure(position, ENTRY_IS_OBJECT, None, severity) for position in positions]


def _quarantine_table(
    spec: RawSpec,
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
    rows: dict[str, list[Any]] = {name: [] for name in spec.quarantine.arrow_schema.names}
    rules = spec.rules
    for position, payload in payloads.items():
        failed = sorted(errors[position], key=lambda failure: _rank(spec, failure.check, failure.column))
        entry = entries[position]
        entry_id = entry.get("_id") if isinstance(entry, dict) else None
        reasons = [_explain(spec, rules, failure.check, failure.column, entry) for failure in failed]
        if position in duplicates:
            reasons = [
                f"{reason} ({duplicates[position]})" if failure.check == "_id_unique" else reason
                for reason, failure in zip(reasons, failed, strict=True)
            ]
        rows["run_id"].append(run_id)
        # As raw stores ids (see _without_nul), so that a quarantined copy names its stored first.
        rows["entry_id"].append(entry_id.replace("\x00", "") if isinstance(entry_id, str) else None)
        rows["check"].append(failed[0].check)
        rows["column"].append(failed[0].column)
        rows["severity"].append(Severity.ERROR.value)
        rows["reason"].append("; ".join(reasons))
        rows["payload"].append(payload)
        rows["source"].append(source)
        rows["quarantined_at"].append(stamp)
    return pa.Table.from_pydict(rows, schema=spec.quarantine.arrow_schema)


def _explain(spec: RawSpec, rules: dict[str, str], check: str, column: str | None, entry: object) -> str:
    """`<check>: <column>=<value as sent> fails "<rule>"`."""
    if column is None:
        shown = f"entry={_short_json(entry)}"
    else:
        assert isinstance(entry, dict)  # only entry_is_object fails on non-objects
        keys = [key for key in spec.source_keys[column] if key in entry]
        sent = next((entry[key] for key in keys if entry[key] is not None), None)
        shown = f"{column}={_short_json(sent)}" if keys else f"{column} missing"
    return f'{check}: {shown} fails "{rules[check]}"'


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
        first = first_copy[str(frame.at[position, "_id"])]  # the id as stored (NUL removed)
        if first not in first_payloads:
            first_payloads[first] = payloads.get(first) or _payload_json(entries[first])
        kind = "exact" if first_payloads[first] == payloads[position] else "conflicting"
        notes[position] = f"{kind} duplicate of the entry at position {first}"
    return notes


def _check_results(
    spec: RawSpec, failures: list[_Failure], entries: Sequence[object]
) -> tuple[CheckResult, ...]:
    positions_by_check: dict[tuple[str, str | None, Severity], list[int]] = {}
    for failure in failures:
        key = (failure.check, failure.column, failure.severity)
        positions_by_check.setdefault(key, []).append(failure.position)
    return tuple(
        CheckResult(
            check=check,
            table=spec.table.name,
            column=column,
            severity=severity,
            failing_count=len(positions),
            samples=tuple(_sample(entries[i]) for i in heapq.nsmallest(MAX_SAMPLES, positions)),
        )
        for (check, column, severity), positions in sorted(
            positions_by_check.items(), key=lambda item: _rank(spec, item[0][0], item[0][1])
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
