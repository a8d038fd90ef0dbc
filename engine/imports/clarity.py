"""Dexcom Clarity CSV exports: the header, the rows before the data, and every variant seen."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.errors import SourceError
from engine.imports.common import ROW_COLUMNS, ParsedRows, split_records
from engine.imports.detect import CLARITY, delimiter, is_clarity_header

DATA_EVENTS = frozenset({"EGV", "Calibration", "Insulin", "Carbs", "Exercise", "Health"})
"""Event Types of data records; other rows without a timestamp (FirstName, LastName, Device, Alert)
are settings and the patient's name, never kept."""
_KINDS = {"EGV": "reading", "Calibration": "calibration", "Insulin": "insulin", "Carbs": "carbs"}
_TIMESTAMP = r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*$"
HEADER_HINT = "export it again from Clarity (Export in the Reports menu)"


def _column(header: list[str], name: str, *, prefix: bool = False) -> int | None:
    for index, cell in enumerate(header):
        if cell == name or (prefix and cell.startswith(name)):
            return index
    return None


def _unit(cell: str) -> str:
    return "mmol/L" if "mmol" in cell else "mg/dL"


def parse_local(texts: pd.Series, pattern: str) -> pd.Series:
    """Text matching `pattern` (year, month, day, hour, minute, second groups) as naive datetime64; NaT else."""
    parts = texts.astype("string").str.extract(pattern)
    parts.columns = ["year", "month", "day", "hour", "minute", "second"]
    numbers = parts.apply(pd.to_numeric, errors="coerce")
    numbers["second"] = numbers["second"].fillna(0).where(numbers["year"].notna())
    return pd.to_datetime(numbers, errors="coerce")


def parse(path: Path, text: str) -> ParsedRows:
    """The file's data records; raises SourceError when it has no Clarity header."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines[:3]) if "Event Type" in line), 0)
    sep = delimiter(lines[start] if lines else ",")
    cells, originals = split_records(text, sep)
    header_at = next(
        (i for i, row in enumerate(cells[:3]) if is_clarity_header([c.strip() for c in row])), None
    )
    if header_at is None:
        raise SourceError(f"{path}: no Dexcom Clarity header in its first lines", HEADER_HINT)
    header = [c.strip() for c in cells[header_at]]
    at = {
        "timestamp": _column(header, "Timestamp", prefix=True),
        "event": _column(header, "Event Type"),
        "subtype": _column(header, "Event Subtype"),
        "device_info": _column(header, "Device Info"),
        "source": _column(header, "Source Device ID"),
        "glucose": _column(header, "Glucose Value", prefix=True),
        "insulin": _column(header, "Insulin Value", prefix=True),
        "carbs": _column(header, "Carb Value", prefix=True),
        "duration": _column(header, "Duration", prefix=True),
        "transmitter_time": _column(header, "Transmitter Time", prefix=True),
        "transmitter": _column(header, "Transmitter ID"),
    }
    patient = _column(header, "Patient Info")
    glucose_unit = _unit(header[at["glucose"]]) if at["glucose"] is not None else "mg/dL"
    width = len(header)

    def cell(row: list[str], name: str) -> str | None:
        index = at[name]
        if index is None or index >= len(row):
            return None
        value = row[index].strip()
        return value or None

    skipped = {"header": 1, "metadata": header_at, "blank": 0}
    columns: dict[str, list[str | None]] = {name: [] for name in ROW_COLUMNS}
    positions: list[int] = []
    for position in range(header_at + 1, len(cells)):
        row = cells[position]
        if not any(value.strip() for value in row):
            skipped["blank"] += 1
            continue
        stamp, event = cell(row, "timestamp"), cell(row, "event")
        if stamp is None and event not in DATA_EVENTS:
            skipped["metadata"] += 1
            continue
        row = row + [""] * (width - len(row))
        subtype = cell(row, "subtype")
        kind = _KINDS.get(event or "", "event")
        glucose = cell(row, "glucose") if kind in ("reading", "calibration") else None
        insulin = cell(row, "insulin") if kind == "insulin" else None
        long_acting = insulin is not None and subtype is not None and subtype.lower().startswith("long")
        carbs = cell(row, "carbs") if kind == "carbs" else None
        value, unit = (
            (glucose, glucose_unit) if glucose is not None else (insulin, "U") if insulin else (carbs, "g")
        )
        duration = cell(row, "duration")
        positions.append(position)
        columns["record_type"].append(event)
        columns["record_kind"].append(kind)
        columns["event_subtype"].append(subtype)
        columns["device"].append(cell(row, "source") or cell(row, "device_info"))
        columns["device_serial"].append(cell(row, "transmitter"))
        columns["local_time"].append(stamp)
        columns["value_text"].append(value)
        columns["value_unit"].append(unit if value is not None else None)
        columns["glucose_text"].append(glucose)
        columns["glucose_unit"].append(glucose_unit)
        columns["insulin_text"].append(None if long_acting else insulin)
        columns["long_insulin_text"].append(insulin if long_acting else None)
        columns["carbs_text"].append(carbs)
        columns["notes"].append(f"duration {duration}" if duration else None)
        # Two readings of a repeated autumn hour differ in their transmitter time.
        columns["identity"].append(cell(row, "transmitter_time"))
    rows = pd.DataFrame(columns, index=pd.Index(positions, dtype="int64"), dtype=object)
    rows["local_ts"] = (
        parse_local(rows["local_time"], _TIMESTAMP) if positions else pd.Series(dtype="datetime64[ns]")
    )
    return ParsedRows(
        fmt=CLARITY,
        records=originals,
        rows=rows,
        skipped=skipped,
        redact={patient: "Patient Info"} if patient is not None else {},
    )
