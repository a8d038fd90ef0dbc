"""LibreView CSV exports: a line of metadata, the header, records typed by number, local dates in the
order of the portal's locale."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import SourceError
from engine.ingest.imports.common import CsvTable, ParsedRows, column_index, unit_of
from engine.ingest.imports.detect import LIBREVIEW, is_libreview_header
from engine.ingest.imports.reading import CsvText, find_header

DATE_ORDERS = ("dmy", "mdy")
# Record Type -> kind. docs/imports.md cites where this list comes from.
_KINDS = {"0": "reading", "1": "scan", "2": "strip", "3": "ketone", "4": "insulin", "5": "carbs"}
_TIMESTAMP = (
    r"^\s*(\d{1,4})[-/.](\d{1,2})[-/.](\d{1,4})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp]\.?[Mm]\.?)?\s*$"
)
HEADER_HINT = "download it again from LibreView (Glucose History, Download Glucose Data)"
DATE_ORDER_HINT = (
    "pass --date-order dmy (DD-MM-YYYY, as in Europe) or --date-order mdy (MM-DD-YYYY, as in the US)"
)


def header(path: Path, text: CsvText) -> tuple[CsvText, int, list[str]]:
    """The file's delimiter and width, its header's position and cells; raises SourceError without one."""
    return find_header(path, text, "Record Type", is_libreview_header, "LibreView", HEADER_HINT)


def timestamp_column(header: list[str]) -> int | None:
    return column_index(header, "Device Timestamp")


def parse(
    table: CsvTable, header_at: int, header: list[str], local_ts: pd.Series, date_order: str | None
) -> ParsedRows:
    """The data records of a slice of the file (`local_ts`: its records' timestamps, read by
    `local_times` in `date_order`)."""
    at = {
        "device": column_index(header, "Device"),
        "timestamp": timestamp_column(header),
        "serial": column_index(header, "Serial Number"),
        "type": column_index(header, "Record Type"),
        "historic": column_index(header, "Historic Glucose", prefix=True),
        "scan": column_index(header, "Scan Glucose", prefix=True),
        "strip": column_index(header, "Strip Glucose", prefix=True),
        "ketone": column_index(header, "Ketone", prefix=True),
        "rapid": column_index(header, "Rapid-Acting Insulin (units)", "Rapid-Acting Insulin Value (units)"),
        "rapid_text": column_index(header, "Non-numeric Rapid-Acting Insulin"),
        "meal": column_index(header, "Meal Insulin (units)"),
        "correction": column_index(header, "Correction Insulin (units)"),
        "user_change": column_index(header, "User Change Insulin (units)"),
        "long": column_index(header, "Long-Acting Insulin (units)", "Long-Acting Insulin Value (units)"),
        "long_text": column_index(header, "Non-numeric Long-Acting Insulin"),
        "carbs": column_index(header, "Carbohydrates (grams)"),
        "food": column_index(header, "Non-numeric Food"),
        "notes": column_index(header, "Notes"),
    }
    units = {
        name: unit_of(header[index])
        for name in ("historic", "scan", "strip")
        if (index := at[name]) is not None
    }
    units = {name: units.get(name, "mg/dL") for name in ("historic", "scan", "strip")}
    after = table.after(header_at)
    blank = table.blank(after)
    data = after[~blank]

    def cell(name: str) -> pd.Series:
        return table.column(at[name], data)

    record_type = cell("type")
    kind = record_type.map(_KINDS).fillna("event")
    glucose = pd.Series(None, index=data, dtype=object)
    glucose_unit = pd.Series(None, index=data, dtype=object)
    for source, wanted in (("historic", "reading"), ("scan", "scan"), ("strip", "strip")):
        chosen = kind == wanted
        glucose = glucose.where(~chosen, cell(source))
        glucose_unit = glucose_unit.where(~chosen, units[source])
    is_insulin = kind == "insulin"
    rapid = _rapid(cell).where(is_insulin, None)
    long_acting = cell("long").where(is_insulin, None)
    carbs = cell("carbs").where(kind == "carbs", None)
    ketone = cell("ketone").where(kind == "ketone", None)
    notes = pd.Series("", index=data, dtype=object)
    for name in ("notes", "food", "rapid_text", "long_text"):
        part = cell(name).fillna("")
        notes = notes.where(part == "", notes.where(notes == "", notes + " / ") + part)
    value = glucose.combine_first(ketone).combine_first(rapid).combine_first(long_acting).combine_first(carbs)
    unit = np.where(
        glucose.notna(), glucose_unit, np.where(ketone.notna(), "mmol/L", np.where(is_insulin, "U", "g"))
    )
    only_long = (rapid.isna() & long_acting.notna()).to_numpy(dtype=bool)
    subtype = pd.Series(np.where(only_long, "Long-Acting", "Rapid-Acting"), index=data, dtype=object).where(
        is_insulin, None
    )
    rows = pd.DataFrame(
        {
            "record_type": record_type,
            "record_kind": kind,
            "event_subtype": subtype,
            "device": cell("device"),
            "device_serial": cell("serial"),
            "local_time": cell("timestamp"),
            "value_text": value,
            "value_unit": pd.Series(unit, index=data, dtype=object).where(value.notna(), None),
            "glucose_text": glucose,
            "glucose_unit": glucose_unit,
            "insulin_text": rapid,
            "long_insulin_text": long_acting,
            "carbs_text": carbs,
            "notes": notes.where(notes != "", None),
            "identity": pd.Series(None, index=data, dtype=object),
        },
        index=data,
        dtype=object,
    )
    rows["local_ts"] = local_ts.loc[data]
    # Line 1 is metadata (Glucose Data, Generated on, ..., Generated by, the patient's name): never kept.
    skipped = {
        "header": int(header_at in table.cells.index),
        "metadata": int((table.cells.index < header_at).sum()),
        "blank": int(blank.sum()),
    }
    return ParsedRows(fmt=LIBREVIEW, table=table, rows=rows, skipped=skipped, date_order=date_order)


def _rapid(cell: Callable[[str], pd.Series]) -> pd.Series:
    """Rapid-acting units: the column of that name, else the sum of the bolus calculator's columns
    (meal, correction, user change) that newer exports fill instead; a part that is no number is
    given as written, for its record to be quarantined."""
    rapid = cell("rapid")
    parts = [cell(name) for name in ("meal", "correction", "user_change")]
    numbers = [pd.to_numeric(p.str.replace(",", ".", regex=False), errors="coerce") for p in parts]
    total = sum((n.fillna(0) for n in numbers), start=pd.Series(0.0, index=rapid.index))
    given = pd.concat([p.notna() for p in parts], axis=1).any(axis=1)
    junk = pd.concat([p.notna() & n.isna() for p, n in zip(parts, numbers, strict=True)], axis=1).any(axis=1)
    first = parts[0].combine_first(parts[1]).combine_first(parts[2])
    summed = total.map(lambda v: f"{v:g}").where(~junk, first).where(given, None)
    return rapid.combine_first(summed)


def local_times(path: Path, texts: pd.Series, date_order: str | None) -> tuple[pd.Series, str | None]:
    """The Device Timestamps as naive datetime64 (NaT where unreadable), and the date order used.

    YYYY-MM-DD needs no order. Otherwise a first number above 12 means DD-MM, a second above 12 means
    MM-DD; when neither occurs, the order under which consecutive dates step by one day wins (an export
    covers days in a row); when the file still cannot tell, the user must say."""
    parts = texts.astype("string").str.extract(_TIMESTAMP)
    parts.columns = ["a", "b", "c", "hour", "minute", "second", "meridiem"]
    numbers = parts[["a", "b", "c", "hour", "minute", "second"]].apply(pd.to_numeric, errors="coerce")
    numbers["second"] = numbers["second"].fillna(0)
    ymd = (parts["a"].str.len() == 4).fillna(False).astype(bool)
    meridiem = parts["meridiem"].str.lower().str[0].fillna("")
    afternoon = np.where((meridiem == "p").to_numpy(dtype=bool), 12, 0)
    hour = numbers["hour"].where(meridiem == "", numbers["hour"] % 12 + afternoon)
    order = date_order or _date_order(path, numbers[~ymd])
    day, month = ("a", "b") if order == "dmy" else ("b", "a")
    stamps = pd.to_datetime(
        pd.DataFrame(
            {
                "year": numbers["c"].where(~ymd, numbers["a"]),
                "month": numbers[month].where(~ymd, numbers["b"]),
                "day": numbers[day].where(~ymd, numbers["c"]),
                "hour": hour,
                "minute": numbers["minute"],
                "second": numbers["second"],
            }
        ),
        errors="coerce",
    )
    return stamps, order if (~ymd).any() else None


def _date_order(path: Path, numbers: pd.DataFrame) -> str | None:
    if numbers.empty:
        return None
    first_big = bool((numbers["a"] > 12).any())
    second_big = bool((numbers["b"] > 12).any())
    if first_big != second_big:
        return "dmy" if first_big else "mdy"
    if not first_big:
        steps = {order: _day_steps(numbers, order) for order in DATE_ORDERS}
        if steps["dmy"] != steps["mdy"]:
            return max(steps, key=lambda order: steps[order])
        raise SourceError(f"{path}: its dates read as day-month and as month-day alike", DATE_ORDER_HINT)
    raise SourceError(
        f"{path}: its dates read as neither day-month nor month-day throughout (both numbers exceed 12 somewhere)",
        DATE_ORDER_HINT,
    )


def _day_steps(numbers: pd.DataFrame, order: str) -> int:
    """How many of the file's consecutive distinct dates are one day apart when read in `order`."""
    day, month = ("a", "b") if order == "dmy" else ("b", "a")
    dates = pd.to_datetime(
        pd.DataFrame({"year": numbers["c"], "month": numbers[month], "day": numbers[day]}), errors="coerce"
    ).dropna()
    distinct = dates.drop_duplicates().sort_values()
    return int((distinct.diff() == pd.Timedelta(days=1)).sum())
