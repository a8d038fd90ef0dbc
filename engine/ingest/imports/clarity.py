"""Dexcom Clarity CSV exports: the header, the rows before the data, and every variant seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.ingest.imports.common import CsvTable, ParsedRows, column_index, unit_of
from engine.ingest.imports.detect import CLARITY, is_clarity_header
from engine.ingest.imports.reading import CsvText, find_header

DATA_EVENTS = frozenset({"EGV", "Calibration", "Insulin", "Carbs", "Exercise", "Health"})
"""Event Types of data records; other rows without a timestamp (FirstName, LastName, Device, Alert)
are settings and the patient's name, never kept."""
_KINDS = {"EGV": "reading", "Calibration": "calibration", "Insulin": "insulin", "Carbs": "carbs"}
_TIMESTAMP = r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*$"
HEADER_HINT = "export it again from Clarity (Export in the Reports menu)"


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
    numbers = parts.apply(pd.to_numeric, errors="coerce").astype("float64")
    numbers["second"] = numbers["second"].fillna(0)
    # Only whole matches are assembled: pandas refuses a missing part instead of giving NaT.
    whole = numbers.notna().all(axis=1)
    slow = pd.Series(pd.NaT, index=texts.index, dtype="datetime64[ns]")
    if whole.any():
        slow[whole] = pd.to_datetime(numbers[whole], errors="coerce").astype("datetime64[ns]")
    return fast.astype("datetime64[ns]").where(~rest, slow)


def header(path: Path, text: CsvText) -> tuple[CsvText, int, list[str]]:
    """The file's delimiter and width, its header's position and cells; raises SourceError without one."""
    return find_header(path, text, "Event Type", is_clarity_header, "Dexcom Clarity", HEADER_HINT)


def timestamp_column(header: list[str]) -> int | None:
    return column_index(header, "Timestamp", prefix=True)


def local_times(path: Path, texts: pd.Series, date_order: str | None) -> tuple[pd.Series, str | None]:
    """The timestamps as naive datetime64 (NaT where unreadable); Clarity has no date order."""
    return parse_local(texts, _TIMESTAMP), None


def parse(table: CsvTable, header_at: int, header: list[str], local_ts: pd.Series) -> ParsedRows:
    """The data records of a slice of the file (`local_ts`: its records' timestamps, read by `local_times`)."""
    at = {
        "timestamp": timestamp_column(header),
        "event": column_index(header, "Event Type"),
        "subtype": column_index(header, "Event Subtype"),
        "device_info": column_index(header, "Device Info"),
        "source": column_index(header, "Source Device ID"),
        "glucose": column_index(header, "Glucose Value", prefix=True),
        "insulin": column_index(header, "Insulin Value", prefix=True),
        "carbs": column_index(header, "Carb Value", prefix=True),
        "duration": column_index(header, "Duration", prefix=True),
        "transmitter_time": column_index(header, "Transmitter Time", prefix=True),
        "transmitter": column_index(header, "Transmitter ID"),
    }
    patient = column_index(header, "Patient Info")
    glucose_unit = unit_of(header[at["glucose"]]) if at["glucose"] is not None else "mg/dL"
    after = table.after(header_at)
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
    rows["local_ts"] = local_ts.loc[data]
    before = int((table.cells.index < header_at).sum())
    return ParsedRows(
        fmt=CLARITY,
        table=table,
        rows=rows,
        skipped={
            "header": int(header_at in table.cells.index),
            "metadata": before + int(metadata.sum()),
            "blank": int(blank.sum()),
        },
        redact={patient: "Patient Info"} if patient is not None else {},
    )
