"""Pandera models of the data records of Dexcom Clarity and LibreView CSV exports, one per format.

A frame holds one row per data record after the format module read it: the text as written where a
reason must quote it, and the values derived from it (the local time, its instant, glucose in mg/dL,
doses). Every check is an error: the record goes to quarantine with its reason and original line.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

NOW_MS_ATTR = "now_ms"
"""`DataFrame.attrs` key of the validation clock (epoch ms)."""
LOW_MG_DL = 39
HIGH_MG_DL = 401
GLUCOSE_MIN_MG_DL = 20
GLUCOSE_MAX_MG_DL = 600
INSULIN_MAX_UNITS = 100
CARBS_MAX_G = 500
EPOCH_2000_MS = 946_684_800_000
FUTURE_TOLERANCE_MS = 3_600_000
GLUCOSE_KINDS = frozenset({"reading", "scan", "strip", "calibration"})
KINDS = ("reading", "scan", "strip", "calibration", "insulin", "carbs", "ketone", "event")


FRAME_CHECK_COLUMN = {"glucose_is_number": "glucose_text", "dose_is_number": "insulin_text"}
"""The column a dataframe-level check's reason quotes."""


def _flags(values: pd.Series, passed: np.ndarray) -> Series[bool]:
    return Series[bool](passed, index=values.index)


def _given(values: pd.Series) -> np.ndarray:
    text = values.astype("string").str.strip()
    return (text.notna() & (text != "")).to_numpy(dtype=bool)


class ImportRows(pa.DataFrameModel):
    """What every CSV format's records must satisfy."""

    record_kind: Series[Any] = pa.Field()
    record_type: Series[Any] = pa.Field()
    local_ts: Series[Any] = pa.Field(nullable=True)
    instant_ms: Series[Any] = pa.Field(nullable=True)
    glucose_text: Series[Any] = pa.Field(nullable=True)
    glucose: Series[Any] = pa.Field(nullable=True)
    insulin_text: Series[Any] = pa.Field(nullable=True)
    insulin: Series[Any] = pa.Field(nullable=True)
    long_insulin_text: Series[Any] = pa.Field(nullable=True)
    long_insulin: Series[Any] = pa.Field(nullable=True)
    carbs_text: Series[Any] = pa.Field(nullable=True)
    carbs: Series[Any] = pa.Field(nullable=True)

    class Config:
        strict = True
        metadata: ClassVar[dict[str, Any]] = {"column": FRAME_CHECK_COLUMN}

    @pa.check("record_kind", name="kind_known")
    def kind_known(cls, kinds: Series[Any]) -> Series[bool]:
        """The record is a reading, scan, strip, calibration, insulin, carbs, ketone or event."""
        return _flags(kinds, kinds.isin(KINDS).to_numpy())

    @pa.check("instant_ms", name="not_before_2000")
    def not_before_2000(cls, instants: Series[Any]) -> Series[bool]:
        """The time is not before 2000-01-01."""
        values = instants.to_numpy(dtype="float64")
        return _flags(instants, np.isnan(values) | (values >= EPOCH_2000_MS))

    @pa.check("instant_ms", name="not_in_future")
    def not_in_future(cls, instants: Series[Any]) -> Series[bool]:
        """The time is at most 1 hour after the import's clock."""
        values = instants.to_numpy(dtype="float64")
        latest = instants.attrs[NOW_MS_ATTR] + FUTURE_TOLERANCE_MS
        return _flags(instants, np.isnan(values) | (values <= latest))

    @pa.dataframe_check(name="glucose_is_number")
    def glucose_is_number(cls, rows: pd.DataFrame) -> Series[bool]:
        """A glucose record's value is a number, or Low or High (outside the sensor's range)."""
        needs = rows["record_kind"].isin(GLUCOSE_KINDS).to_numpy()
        return _flags(rows["glucose"], ~needs | rows["glucose"].notna().to_numpy())

    @pa.check("glucose", name="glucose_in_range")
    def glucose_in_range(cls, glucose: Series[Any]) -> Series[bool]:
        """Glucose is from 20 to 600 mg/dL (1.1 to 33.3 mmol/L): anything else is impossible."""
        values = glucose.to_numpy(dtype="float64")
        return _flags(
            glucose, np.isnan(values) | ((values >= GLUCOSE_MIN_MG_DL) & (values <= GLUCOSE_MAX_MG_DL))
        )

    @pa.dataframe_check(name="dose_is_number")
    def dose_is_number(cls, rows: pd.DataFrame) -> Series[bool]:
        """An insulin or carbs value, when given, is a number."""
        passed = np.ones(len(rows), dtype=bool)
        for text, value in (
            ("insulin_text", "insulin"),
            ("long_insulin_text", "long_insulin"),
            ("carbs_text", "carbs"),
        ):
            passed &= ~_given(rows[text]) | rows[value].notna().to_numpy()
        return _flags(rows["insulin"], passed)

    @pa.check("insulin", "long_insulin", name="insulin_in_range")
    def insulin_in_range(cls, insulin: Series[Any]) -> Series[bool]:
        """Insulin is from 0 to 100 units."""
        values = insulin.to_numpy(dtype="float64")
        return _flags(insulin, np.isnan(values) | ((values >= 0) & (values <= INSULIN_MAX_UNITS)))

    @pa.check("carbs", name="carbs_in_range")
    def carbs_in_range(cls, carbs: Series[Any]) -> Series[bool]:
        """Carbs are from 0 to 500 g."""
        values = carbs.to_numpy(dtype="float64")
        return _flags(carbs, np.isnan(values) | ((values >= 0) & (values <= CARBS_MAX_G)))


class ClarityRows(ImportRows):
    """A Dexcom Clarity export's data records (Event Type EGV, Calibration, Insulin, Carbs, Exercise,
    Health, ...)."""

    @pa.check("local_ts", name="is_local_time", ignore_na=False)
    def is_local_time(cls, stamps: Series[Any]) -> Series[bool]:
        """The Timestamp is a local date-time, YYYY-MM-DDThh:mm:ss (or with a space for the T)."""
        return _flags(stamps, stamps.notna().to_numpy())

    @pa.check("record_type", name="event_type_given")
    def event_type_given(cls, types: Series[Any]) -> Series[bool]:
        """The Event Type is given."""
        return _flags(types, _given(types))


class LibreViewRows(ImportRows):
    """A LibreView export's data records (Record Type 0 historic, 1 scan, 2 strip, 3 ketone, 4 insulin,
    5 food, 6 notes and events; docs/imports.md says where the list comes from)."""

    @pa.check("local_ts", name="is_local_time", ignore_na=False)
    def is_local_time(cls, stamps: Series[Any]) -> Series[bool]:
        """The Device Timestamp is a local date-time, DD-MM-YYYY HH:MM or MM-DD-YYYY HH:MM by locale."""
        return _flags(stamps, stamps.notna().to_numpy())

    @pa.check("record_type", name="record_type_is_integer")
    def record_type_is_integer(cls, types: Series[Any]) -> Series[bool]:
        """The Record Type is a whole number."""
        return _flags(types, types.astype("string").str.fullmatch(r"\d+").fillna(False).to_numpy(dtype=bool))


CLARITY_ROWS_SCHEMA = ClarityRows.to_schema()
LIBREVIEW_ROWS_SCHEMA = LibreViewRows.to_schema()
