"""What Clarity and LibreView imports share: local time to instants, mmol/L to mg/dL, deterministic ids,
validation by the format's pandera model, and the records, entries and treatments they become."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandera.config import ValidationDepth, config_context
from pandera.errors import SchemaErrors

from engine.errors import ValidationError
from engine.ingest.imports.lake_rows import _iso_utc, _readings, _records_table, _treatments
from engine.ingest.imports.quarantine import (
    _moved_check,
    _quarantine_checks,
    _quarantine_row,
)
from engine.ingest.imports.reading import CsvText
from engine.ingest.validation import CheckResult
from schemas.imports import FRAME_CHECK_COLUMN, HIGH_MG_DL, LOW_MG_DL, NOW_MS_ATTR

MMOL_TO_MG_DL = 18.016
"""Sensors measure integer mg/dL and portals print mmol/L to one decimal: round(mmol x 18.016) gives
back the sensor's integer, which keeps the consensus edges in their bands (3.9 -> 70, 10.0 -> 180)."""
LOW_TEXTS = frozenset({"low", "lo"})
HIGH_TEXTS = frozenset({"high", "hi"})

#: The columns a format module fills, one row per data record of the file (all text, None when empty),
#: plus `local_ts` (naive datetime64, NaT when unreadable).
ROW_COLUMNS = (
    "record_type",
    "record_kind",
    "event_subtype",
    "device",
    "device_serial",
    "local_time",
    "value_text",
    "value_unit",
    "glucose_text",
    "glucose_unit",
    "insulin_text",
    "long_insulin_text",
    "carbs_text",
    "notes",
    "identity",
)


@dataclass
class ParsedRows:
    """A CSV export split into its data records and the lines that are no data."""

    fmt: str
    table: CsvTable
    rows: pd.DataFrame
    """One row per data record, `ROW_COLUMNS` + `local_ts`, indexed by the record's position in `records`."""
    skipped: dict[str, int]
    """Records that are no data, by why: header, metadata (never kept: they name the patient), blank."""
    date_order: str | None = None
    redact: dict[int, str] = field(default_factory=dict)
    """Positions of cells never to be quoted, by their column name (Clarity's Patient Info)."""


@dataclass(frozen=True)
class CsvImport:
    """A CSV export read, checked and shaped for the lake; every record of the file is counted once."""

    fmt: str
    timezone: str
    date_order: str | None
    lines: int
    records: pa.Table
    """Rows of raw.import_records (no run bookkeeping yet), scans excluded."""
    scans: pa.Table
    readings: pd.DataFrame
    """Readings, calibrations and strips, in columns (`_id`, `kind`, `date`, `value`, `device`, `offset`):
    made into Nightscout entries a batch at a time (`entry_batch`), for memory's sake."""
    treatments: list[dict[str, Any]]
    """Insulin and carbs as Nightscout treatments."""
    quarantine: list[dict[str, Any]]
    """Bad records: check, column, reason, the original line."""
    checks: tuple[CheckResult, ...]
    skipped: dict[str, int]
    digest: str

    @property
    def entry_count(self) -> int:
        return len(self.readings)

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Every reading as a Nightscout entry."""
        return self.entry_batch(0, len(self.readings))

    def entry_batch(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Readings `start`..`stop` as Nightscout entries: sgv, or mbg for a finger-stick (mg/dL, epoch ms)."""
        part = self.readings.iloc[start:stop]
        millis = part["date"].to_numpy()
        entries = []
        for entry_id, kind, ms, value, device, offset, iso in zip(
            part["_id"].to_numpy(),
            part["kind"].to_numpy(),
            millis,
            part["value"].to_numpy(),
            part["device"].to_numpy(),
            part["offset"].to_numpy(),
            _iso_utc(millis),
            strict=True,
        ):
            entry_type = "sgv" if kind == "reading" else "mbg"
            entries.append(
                {
                    "_id": entry_id,
                    "type": entry_type,
                    "date": int(ms),
                    "dateString": iso,
                    entry_type: int(value),
                    "device": device,
                    "utcOffset": int(offset),
                }
            )
        return entries

    def params(self) -> dict[str, Any]:
        return import_params(self.fmt, self.timezone, self.date_order, self.lines, self.digest)


def import_params(fmt: str, timezone: str, date_order: str | None, lines: int, digest: str) -> dict[str, Any]:
    """What the run records about an import: never the file's name, which often holds the
    patient's (CLARITY_Export_<Last>_<First>_..., <Name>_glucose_<date>.csv)."""
    return {"format": fmt, "timezone": timezone, "date_order": date_order, "lines": lines, "sha256": digest}


@dataclass
class CsvTable:
    """Records of a CSV file as text cells ("" when empty), indexed by their position in the file."""

    source: CsvText
    cells: pd.DataFrame

    def original(self, position: int) -> str:
        """The text of record `position` as the file holds it."""
        return self.source.original(position)

    @property
    def delimiter(self) -> str:
        return self.source.delimiter

    def after(self, position: int) -> pd.Index:
        """The positions of this table's records that come after record `position`."""
        index = self.cells.index
        return index[index > position]

    def column(self, index: int | None, rows: pd.Index) -> pd.Series:
        """Column `index`'s cells of `rows`, stripped, as objects: None where empty or where the file has
        no such column."""
        if index is None or index not in self.cells.columns:
            return pd.Series(None, index=rows, dtype=object)
        stripped = pc.utf8_trim_whitespace(
            pa.array(self.cells[index].loc[rows].to_numpy(dtype=object), pa.string())
        )
        values = pc.if_else(pc.equal(stripped, ""), None, stripped)
        return pd.Series(values.to_numpy(zero_copy_only=False), index=rows, dtype=object)

    def blank(self, rows: pd.Index) -> np.ndarray:
        """Rows whose every cell is empty."""
        empty = np.ones(len(rows), dtype=bool)
        for column in self.cells.columns:
            empty &= (self.cells[column].loc[rows] == "").to_numpy(dtype=bool)
        return empty


def column_index(header: list[str], *names: str, prefix: bool = False) -> int | None:
    """The position of the first header cell named (or, with `prefix`, starting with) one of `names`."""
    for index, cell in enumerate(header):
        for name in names:
            if cell == name or (prefix and cell.startswith(name)):
                return index
    return None


def unit_of(header_cell: str) -> str:
    """The glucose unit a column's name gives."""
    return "mmol/L" if "mmol" in header_cell else "mg/dL"


def number(values: pd.Series) -> pd.Series:
    """Text as float64, a decimal comma read as a point; NaN for anything else."""
    text = pc.replace_substring(
        pc.utf8_trim_whitespace(pa.array(values.to_numpy(dtype=object), pa.string(), from_pandas=True)),
        ",",
        ".",
    )
    parsed = pd.to_numeric(text.to_numpy(zero_copy_only=False), errors="coerce")
    return pd.Series(parsed, index=values.index, dtype="float64")


def glucose_mg_dl(text: pd.Series, unit: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Glucose text as integer mg/dL (float64 holding integers, NaN where no number) and its flag:
    Low and High, outside the sensor's range, as Nightscout stores Dexcom's: 39 and 401."""
    lowered = text.astype("string").str.strip().str.lower()
    is_low = lowered.isin(LOW_TEXTS).to_numpy(dtype=bool)
    is_high = lowered.isin(HIGH_TEXTS).to_numpy(dtype=bool)
    flags: list[str | None] = [
        "Low" if low else "High" if high else None for low, high in zip(is_low, is_high, strict=True)
    ]
    flag = pd.Series(flags, index=text.index, dtype=object)
    values = number(text)
    mmol = (unit == "mmol/L").to_numpy()
    converted = values.to_numpy().copy()
    # floor(x + 0.5): numpy rounds halves to even, a meter rounds them up.
    converted[mmol] = np.floor(converted[mmol] * MMOL_TO_MG_DL + 0.5)
    converted[is_low] = LOW_MG_DL
    converted[is_high] = HIGH_MG_DL
    return pd.Series(converted, index=text.index), flag


def localise(
    naive: pd.Series, zone: str, groups: pd.Series, descending: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local date-times as epoch ms (float64, NaN where NaT), each row's fold and whether it was moved.

    A local time the autumn change repeats is both instants: in file order, the first copy of a
    time within its group (device and record kind) is the earlier instant, a repeat or anything after
    a step back in time is the later one (reversed when the file runs newest first). A local time
    the spring change skips is read with the offset before the change, which moves it forward by the
    gap, as a clock left unchanged would have shown it.
    """
    index = pd.DatetimeIndex(naive).as_unit("ns")
    try:
        zoned = index.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    except Exception as e:  # pandas raises several types for one cause: a zone it cannot use
        raise ValidationError(
            f"cannot read local times in zone {zone!r}: {e}", "use an IANA zone name"
        ) from e
    missing = np.asarray(zoned.isna(), dtype=bool)
    unreadable = np.asarray(index.isna(), dtype=bool)
    stamps = index.asi8
    millis = np.where(missing, np.nan, zoned.asi8 // 1_000_000).astype("float64")
    folds = np.zeros(len(index), dtype="int8")
    moved = np.zeros(len(index), dtype=bool)
    unresolved = np.flatnonzero(missing & ~unreadable)
    if len(unresolved) == 0:
        return millis, folds, moved
    tz = ZoneInfo(zone)
    seen: dict[tuple[object, object], set[int]] = {}
    last: dict[tuple[object, object], int] = {}
    stepped_back: set[tuple[object, object]] = set()
    group_values = groups.to_numpy()
    for position in unresolved:
        stamp = int(stamps[position])
        local = pd.Timestamp(stamp).to_pydatetime()
        early = local.replace(tzinfo=tz, fold=0)
        late = local.replace(tzinfo=tz, fold=1)
        if early.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local:
            moved[position] = True
            millis[position] = _epoch_ms(early)
            continue
        key = (group_values[position], local.date())
        if key in last and stamp < last[key]:
            stepped_back.add(key)
        times = seen.setdefault(key, set())
        repeat = stamp in times or key in stepped_back
        times.add(stamp)
        last[key] = stamp
        fold = int(repeat) ^ int(descending)
        folds[position] = fold
        millis[position] = _epoch_ms(late if fold else early)
    return millis, folds, moved


def _epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def record_ids(fmt: str, rows: pd.DataFrame, folds: np.ndarray, carried: dict[str, int]) -> list[str]:
    """A deterministic `_id` per row from the format, device serial, local time (and which of a
    repeated autumn hour), record type and subtype, and the row's rank among rows alike: the same
    record in another or overlapping export gets the same id. `carried` counts, across slices, the
    rows alike without a local time (rows with one are alike within their day, in one slice)."""
    stamps = rows["local_ts"].to_numpy(dtype="datetime64[ns]")
    # YYYY-MM-DDThh:mm:ss in C (strftime formats each value in Python).
    local = np.where(np.isnat(stamps), "", np.datetime_as_string(stamps.astype("datetime64[s]"), unit="s"))
    # The key text is joined in Arrow, not a Python f-string per row: the same text, in C.
    parts = [
        pa.array(rows[column].fillna("").to_numpy(dtype=object), pa.string())
        for column in ("device_serial", "record_type", "event_subtype")
    ]
    serial, kind, subtype = parts
    keys = pc.binary_join_element_wise(
        pa.scalar(fmt), serial, pa.array(local, pa.string()), pa.array(folds.astype(str)), kind, subtype, "|"
    )
    codes = pc.dictionary_encode(keys).indices.to_numpy()
    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy().copy()
    timeless = np.flatnonzero(np.isnat(stamps))
    if len(timeless):
        alike = keys.take(pa.array(timeless)).to_pylist()
        earlier = {key: carried.get(key, 0) for key in alike}
        for position, key in zip(timeless.tolist(), alike, strict=True):
            rank[position] += earlier[key]
            carried[key] = int(rank[position]) + 1
    texts = pc.binary_join_element_wise(keys, pa.array(rank.astype(str)), "|").cast(pa.binary())
    sha1 = hashlib.sha1
    return [sha1(text).hexdigest()[:24] for text in texts.to_pylist()]


def failures(schema: Any, frame: pd.DataFrame) -> dict[int, list[tuple[str, str | None]]]:
    """(check, column) of every failed check per row position, from a lazy pandera validation."""
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as failed:
            cases = failed.failure_cases
        else:
            return {}
    unplaced = cases[cases["index"].isna()]
    if not unplaced.empty:
        raise ValidationError(
            f"the import schema could not run check(s) {', '.join(sorted(set(unplaced['check'].astype(str))))}",
            "this is a bug in schemas/imports.py, not bad data",
        )
    found: dict[int, list[tuple[str, str | None]]] = {}
    for position, check, column in zip(cases["index"], cases["check"], cases["column"], strict=True):
        named = FRAME_CHECK_COLUMN.get(str(check)) or (column if isinstance(column, str) else None)
        entry = (str(check), named)
        found.setdefault(int(position), [])
        if entry not in found[int(position)]:
            found[int(position)].append(entry)
    return found


def rules(schema: Any) -> dict[str, str]:
    """What each check of a schema requires, by name: the check's docstring."""
    named = {check.name: str(check.description) for check in schema.checks}
    for column in schema.columns.values():
        for check in column.checks:
            named[check.name] = str(check.description)
    return named


@dataclass
class SliceState:
    """What the slices of one file share: whether it runs newest first, and the records without a
    local time seen so far (their repeats and ranks span the file; every other record's, one day)."""

    descending: bool
    timeless: set[tuple[Any, ...]] = field(default_factory=set)
    ranks: dict[str, int] = field(default_factory=dict)


def build(
    parsed: ParsedRows, schema: Any, zone: str, now: datetime, digest: str, state: SliceState
) -> CsvImport:
    """A slice of the parsed export checked by its format's `schema`, in local time `zone`, as lake rows."""
    rows = parsed.rows
    skipped = dict(parsed.skipped)
    content = [c for c in ROW_COLUMNS if c != "local_time"] + ["local_time"]
    repeated = rows.duplicated(content, keep="first").to_numpy().copy()
    timeless = np.flatnonzero(rows["local_ts"].isna().to_numpy())
    if len(timeless):
        seen = [tuple(row) for row in rows.iloc[timeless][content].itertuples(index=False)]
        repeated[timeless] |= np.array([row in state.timeless for row in seen], dtype=bool)
        state.timeless.update(seen)
    skipped["repeated"] = int(repeated.sum())
    rows = rows[~repeated]
    glucose, flag = glucose_mg_dl(rows["glucose_text"], rows["glucose_unit"])
    groups = rows["device_serial"].fillna("") + "|" + rows["record_kind"]
    millis, folds, moved = localise(rows["local_ts"], zone, groups, state.descending)
    frame = pd.DataFrame(
        {
            "record_kind": rows["record_kind"],
            "record_type": rows["record_type"],
            "local_ts": rows["local_ts"],
            "instant_ms": millis,
            "glucose_text": rows["glucose_text"],
            "glucose": glucose,
            "insulin_text": rows["insulin_text"],
            "insulin": number(rows["insulin_text"]),
            "long_insulin_text": rows["long_insulin_text"],
            "long_insulin": number(rows["long_insulin_text"]),
            "carbs_text": rows["carbs_text"],
            "carbs": number(rows["carbs_text"]),
        },
        index=rows.index,
    )
    frame.attrs[NOW_MS_ATTR] = _epoch_ms(now)
    failed = failures(schema, frame)
    explained = rules(schema)
    bad = np.isin(rows.index.to_numpy(), list(failed))
    ids = record_ids(parsed.fmt, rows, folds, state.ranks)
    quarantine = [
        _quarantine_row(parsed, position, failed[position], explained, frame, entry_id)
        for position, entry_id in zip(rows.index[bad], np.asarray(ids, dtype=object)[bad], strict=True)
    ]
    keep = ~bad
    good = rows[keep].assign(
        _id=np.asarray(ids, dtype=object)[keep],
        instant_ms=millis[keep],
        glucose=glucose[keep],
        flag=flag[keep],
        insulin=frame["insulin"][keep],
        long_insulin=frame["long_insulin"][keep],
        carbs=frame["carbs"][keep],
    )
    is_scan = (good["record_kind"] == "scan").to_numpy()
    skipped["scans"] = int(is_scan.sum())
    checks = list(_quarantine_checks(quarantine)) + list(_moved_check(rows, moved, millis, zone))
    return CsvImport(
        fmt=parsed.fmt,
        timezone=zone,
        date_order=parsed.date_order,
        lines=len(parsed.table.cells),
        records=_records_table(good[~is_scan], parsed.fmt, zone),
        scans=_records_table(good[is_scan], parsed.fmt, zone),
        readings=_readings(good, parsed.fmt, zone),
        treatments=_treatments(good, parsed.fmt),
        quarantine=quarantine,
        checks=tuple(checks),
        skipped=skipped,
        digest=digest,
    )
