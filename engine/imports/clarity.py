"""Dexcom Clarity CSV exports: the header, the rows before the data, and every variant seen."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import SourceError
from engine.imports.common import ParsedRows, read_table
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
    # Nearly every file is ISO with a T or a space, which pandas reads in C; the rest by the pattern.
    fast = pd.to_datetime(
        texts.astype("string").str.replace(" ", "T", regex=False), format="%Y-%m-%dT%H:%M:%S", errors="coerce"
    )
    rest = fast.isna() & texts.notna()
    if not rest.any():
        return fast.astype("datetime64[ns]")
    parts = texts.astype("string").str.extract(pattern)
    parts.columns = ["year", "month", "day", "hour", "minute", "second"]
    numbers = parts.apply(pd.to_numeric, errors="coerce")
    numbers["second"] = numbers["second"].fillna(0).where(numbers["year"].notna())
    return fast.astype("datetime64[ns]").where(
        ~rest, pd.to_datetime(numbers, errors="coerce").astype("datetime64[ns]")
    )


def parse(path: Path, text: str) -> ParsedRows:
    """The file's data records; raises SourceError when it has no Clarity header."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines[:3]) if "Event Type" in line), 0)
    sep = delimiter(lines[start] if lines else ",")
    first = [
        c.strip() for c in next(csv.reader(io.StringIO(lines[start] if lines else ""), delimiter=sep), [])
    ]
    table = read_table(text, sep, len(first))
    header_at = next(
        (
            i
            for i in range(min(3, table.lines))
            if is_clarity_header([str(c).strip() for c in table.cells.iloc[i]])
        ),
        None,
    )
    if header_at is None:
        raise SourceError(f"{path}: no Dexcom Clarity header in its first lines", HEADER_HINT)
    header = [str(c).strip() for c in table.cells.iloc[header_at]]
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
    after = pd.RangeIndex(header_at + 1, table.lines)
    blank = table.blank(after)
    stamp, event = table.column(at["timestamp"], after), table.column(at["event"], after)
    metadata = ~blank & stamp.isna().to_numpy() & ~event.isin(DATA_EVENTS).to_numpy()
    data = after[~blank & ~metadata]

    def cell(name: str) -> pd.Series:
        return table.column(at[name], data)

    event = cell("event")
    subtype = cell("subtype")
    kind = event.map(_KINDS).fillna("event")
    is_glucose = kind.isin(("reading", "calibration"))
    glucose = cell("glucose").where(is_glucose, None)
    insulin = cell("insulin").where(kind == "insulin", None)
    long_acting = insulin.notna() & subtype.fillna("").str.lower().str.startswith("long")
    carbs = cell("carbs").where(kind == "carbs", None)
    value = glucose.combine_first(insulin).combine_first(carbs)
    unit = pd.Series(np.where(glucose.notna(), glucose_unit, np.where(insulin.notna(), "U", "g")), index=data)
    duration = cell("duration")
    rows = pd.DataFrame(
        {
            "record_type": event,
            "record_kind": kind,
            "event_subtype": subtype,
            "device": cell("source").combine_first(cell("device_info")),
            "device_serial": cell("transmitter"),
            "local_time": cell("timestamp"),
            "value_text": value,
            "value_unit": unit.where(value.notna(), None),
            "glucose_text": glucose,
            "glucose_unit": pd.Series(glucose_unit, index=data),
            "insulin_text": insulin.where(~long_acting, None),
            "long_insulin_text": insulin.where(long_acting, None),
            "carbs_text": carbs,
            "notes": ("duration " + duration).where(duration.notna(), None),
            # Two readings of a repeated autumn hour differ in their transmitter time.
            "identity": cell("transmitter_time"),
        },
        index=data,
        dtype=object,
    )
    rows["local_ts"] = parse_local(rows["local_time"], _TIMESTAMP)
    return ParsedRows(
        fmt=CLARITY,
        table=table,
        rows=rows,
        skipped={"header": 1, "metadata": header_at + int(metadata.sum()), "blank": int(blank.sum())},
        redact={patient: "Patient Info"} if patient is not None else {},
    )
