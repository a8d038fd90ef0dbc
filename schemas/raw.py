"""Pandera schema of raw Nightscout entries as real servers send them, every check with a severity."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype
from pandera.typing import Series

ERROR = "error"
WARNING = "warning"

# Raw entry keys per lake column, in order of preference: the API's camelCase first, then the
# snake_case a dlt-normalised or exported file may carry.
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    # API v3 serves no `_id`: its `identifier` is the key (see TREATMENT_SOURCE_KEYS).
    "_id": ("_id", "identifier"),
    "type": ("type",),
    "date": ("date",),
    "date_string": ("dateString", "date_string"),
    "sys_time": ("sysTime", "sys_time"),
    "utc_offset": ("utcOffset", "utc_offset"),
    "sgv": ("sgv",),
    "mbg": ("mbg",),
    "direction": ("direction",),
    "trend": ("trend",),
    "noise": ("noise",),
    "filtered": ("filtered",),
    "unfiltered": ("unfiltered",),
    "rssi": ("rssi",),
    "device": ("device",),
    "slope": ("slope",),
    "intercept": ("intercept",),
    "scale": ("scale",),
    "is_valid": ("isValid", "is_valid"),
    "identifier": ("identifier",),
    "srv_modified": ("srvModified", "srv_modified"),
}

ENTRY_TYPES = ("sgv", "mbg", "cal")
DIRECTIONS = (
    "NONE",
    "TripleUp",
    "DoubleUp",
    "SingleUp",
    "FortyFiveUp",
    "Flat",
    "FortyFiveDown",
    "SingleDown",
    "DoubleDown",
    "TripleDown",
    "NOT COMPUTABLE",
    "RATE OUT OF RANGE",
)
GLUCOSE_MIN_MG_DL = 1
GLUCOSE_MAX_MG_DL = 1000
SGV_PLAUSIBLE_MAX_MG_DL = 600
EPOCH_2000_MS = 946_684_800_000
FUTURE_TOLERANCE_MS = 3_600_000
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: `DataFrame.attrs` key holding the validation clock (epoch ms): a future bound that depends on
#: the run cannot live in a schema built once, so it travels with the frame it applies to.
NOW_MS_ATTR = "now_ms"

# infer_dtype kinds that cannot hold bools, which pd.to_numeric would read as 1 and 0.
_BOOL_FREE_KINDS = frozenset({"integer", "floating", "mixed-integer-float", "string", "empty"})
_NUMBER_KINDS = frozenset({"integer", "floating", "mixed-integer-float", "empty"})


def _fits_int64_or_not_int(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def as_number(values: pd.Series) -> np.ndarray:
    """Each raw value as a finite float64: JSON numbers and numeric strings convert; null, bools,
    containers, non-numeric text and non-finite values become NaN."""
    if values.dtype == np.float64:
        numbers = values.to_numpy(copy=True)
    else:
        try:
            converted = pd.to_numeric(values, errors="coerce")
        except OverflowError:  # an integer beyond float64 such as 10**400: junk, not a number
            converted = pd.to_numeric(values.where(values.map(_fits_int64_or_not_int)), errors="coerce")
        numbers = converted.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        if infer_dtype(values, skipna=True) not in _BOOL_FREE_KINDS:
            raw = values.to_numpy(dtype=object)
            # Only values read as 0 or 1 can be bools: look at those alone, not every value.
            for i in np.flatnonzero((numbers == 0) | (numbers == 1)):
                if isinstance(raw[i], bool):
                    numbers[i] = np.nan
    numbers[~np.isfinite(numbers)] = np.nan
    return numbers


def as_integer(values: pd.Series) -> np.ndarray:
    """Like `as_number`, NaN also where the number is not whole (12.5)."""
    numbers = as_number(values)
    numbers[numbers != np.floor(numbers)] = np.nan
    return numbers


def is_text(values: pd.Series) -> np.ndarray:
    """True where the raw value is a string."""
    kind = infer_dtype(values, skipna=True)
    if kind == "string":
        return values.notna().to_numpy()
    if kind in _NUMBER_KINDS:
        return np.zeros(len(values), dtype=bool)
    return np.fromiter(
        (isinstance(value, str) for value in values.to_numpy(dtype=object)),
        dtype=bool,
        count=len(values),
    )


def is_boolean(values: pd.Series) -> np.ndarray:
    """True where the raw value is a JSON boolean."""
    if infer_dtype(values, skipna=True) == "boolean":
        return values.notna().to_numpy()
    return np.fromiter(
        (isinstance(value, bool | np.bool_) for value in values.to_numpy(dtype=object)),
        dtype=bool,
        count=len(values),
    )


def _between(numbers: np.ndarray, low: float, high: float) -> np.ndarray:
    """True where the number is within [low, high] or NaN (a non-number fails its own check)."""
    return np.isnan(numbers) | ((numbers >= low) & (numbers <= high))


def _flags(values: pd.Series, passed: np.ndarray) -> Series[bool]:
    return Series[bool](passed, index=values.index)


_ERROR = {"severity": ERROR}
_WARNING = {"severity": WARNING}
# Severities of the checks that differ from their column's or guard no single column.
_NAMED_SEVERITY = {
    "entry_is_object": ERROR,
    "sgv_plausible": WARNING,
    "sgv_required": ERROR,
    "mbg_required": ERROR,
}
# Dataframe-level checks still guard one column; pandera cannot say which.
_DATAFRAME_CHECK_COLUMN = {"sgv_required": "sgv", "mbg_required": "mbg"}


class RawGlucoseEntries(pa.DataFrameModel):
    """One row per Nightscout entry object, its raw JSON values under the lake's column names.

    Columns hold the values as sent, in whatever dtype holds them (object when mixed): there are
    no dtype checks, the conversion rules live in the checks, so a value that cannot be converted
    fails a check on its own row instead of failing the whole column.

    Severity: a check is reported as `<column>_<name>` (`sgv_in_range`; pandera's built-in
    `nullable=False` as `<column>_not_null`) and takes its column's `metadata["severity"]`, unless
    `Config.metadata["severity"]` names it; that map also holds the checks that guard no single
    column (dataframe-level ones, and `entry_is_object`, which runs before a frame exists).
    The frame's `attrs[NOW_MS_ATTR]` is the validation clock.
    """

    id_: Series[Any] = pa.Field(alias="_id", metadata=_ERROR)
    type: Series[Any] = pa.Field(metadata=_ERROR)
    date: Series[Any] = pa.Field(metadata=_ERROR)
    date_string: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    sys_time: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    utc_offset: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    sgv: Series[Any] = pa.Field(nullable=True, metadata=_ERROR)
    mbg: Series[Any] = pa.Field(nullable=True, metadata=_ERROR)
    direction: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    trend: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    noise: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    filtered: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    unfiltered: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    rssi: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    device: Series[Any] = pa.Field(metadata=_WARNING)
    slope: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    intercept: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    scale: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    is_valid: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    identifier: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    srv_modified: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)

    class Config:
        strict = True
        metadata: ClassVar[dict[str, Any]] = {
            "severity": _NAMED_SEVERITY,
            "column": _DATAFRAME_CHECK_COLUMN,
        }

    @pa.check("_id", name="is_string")
    def _id_is_string(cls, ids: Series[Any]) -> Series[bool]:
        """_id is a non-empty string (Nightscout sends a 24-hex ObjectId)."""
        return _flags(ids, is_text(ids) & (ids != "").to_numpy())

    # Field(unique=True) cannot take report_duplicates in a DataFrameModel and would count ids of
    # other types as duplicates too: this is pandera's unique with report_duplicates="exclude_first".
    @pa.check("_id", name="unique")
    def _id_unique(cls, ids: Series[Any]) -> Series[bool]:
        """_id is unique within the batch; the first copy is kept."""
        text = is_text(ids)
        return _flags(ids, ~(text & ids.where(text).duplicated(keep="first").to_numpy()))

    @pa.check("type", name="allowed")
    def _type_allowed(cls, types: Series[Any]) -> Series[bool]:
        """type is one of sgv, mbg, cal."""
        return _flags(types, is_text(types) & types.isin(ENTRY_TYPES).to_numpy())

    @pa.check("date", name="is_integer")
    def _date_is_integer(cls, dates: Series[Any]) -> Series[bool]:
        """date is epoch milliseconds: a whole number, or a string holding one."""
        return _flags(dates, ~np.isnan(as_integer(dates)))

    @pa.check("date", name="not_before_2000")
    def _date_not_before_2000(cls, dates: Series[Any]) -> Series[bool]:
        """date is not before 2000-01-01."""
        return _flags(dates, _between(as_integer(dates), EPOCH_2000_MS, np.inf))

    @pa.check("date", name="not_in_future")
    def _date_not_in_future(cls, dates: Series[Any]) -> Series[bool]:
        """date is at most 1 hour after the validation clock."""
        latest = dates.attrs[NOW_MS_ATTR] + FUTURE_TOLERANCE_MS
        return _flags(dates, _between(as_integer(dates), -np.inf, latest))

    @pa.check("sgv", "mbg", name="is_integer")
    def _glucose_is_integer(cls, values: Series[Any]) -> Series[bool]:
        """Glucose is a whole number of mg/dL, or a string holding one."""
        return _flags(values, ~np.isnan(as_integer(values)))

    # 1..38 are sensor error codes: raw keeps what the sensor said, later layers drop them.
    @pa.check("sgv", "mbg", name="in_range")
    def _glucose_in_range(cls, values: Series[Any]) -> Series[bool]:
        """Glucose is from 1 to 1000 mg/dL."""
        numbers = as_integer(values)
        return _flags(values, _between(numbers, GLUCOSE_MIN_MG_DL, GLUCOSE_MAX_MG_DL))

    @pa.check("sgv", name="plausible")
    def _sgv_plausible(cls, sgv: Series[Any]) -> Series[bool]:
        """sgv is at most 600 mg/dL; above is physiologically implausible."""
        numbers = as_integer(sgv)
        implausible = (numbers > SGV_PLAUSIBLE_MAX_MG_DL) & (numbers <= GLUCOSE_MAX_MG_DL)
        return _flags(sgv, ~implausible)

    @pa.check("direction", name="allowed")
    def _direction_allowed(cls, directions: Series[Any]) -> Series[bool]:
        """direction is a trend arrow name Nightscout uploaders use (other text is kept)."""
        return _flags(directions, ~is_text(directions) | directions.isin(DIRECTIONS).to_numpy())

    @pa.check("date_string", "sys_time", "direction", "device", "identifier", name="is_string")
    def _is_string(cls, values: Series[Any]) -> Series[bool]:
        """A string; anything else is stored as null."""
        return _flags(values, is_text(values))

    @pa.check("utc_offset", "trend", "noise", "rssi", name="is_integer")
    def _is_int32(cls, values: Series[Any]) -> Series[bool]:
        """A whole number that fits 32 bits, or a string holding one; else stored as null."""
        numbers = as_integer(values)
        return _flags(values, (numbers >= INT32_MIN) & (numbers <= INT32_MAX))

    @pa.check("filtered", "unfiltered", "slope", "intercept", "scale", name="is_number")
    def _is_number(cls, values: Series[Any]) -> Series[bool]:
        """A finite number, or a string holding one; else stored as null."""
        return _flags(values, ~np.isnan(as_number(values)))

    @pa.check("is_valid", name="is_boolean")
    def _is_boolean(cls, values: Series[Any]) -> Series[bool]:
        """true or false; anything else is stored as null (read as valid)."""
        return _flags(values, is_boolean(values))

    @pa.check("srv_modified", name="is_integer")
    def _is_int64(cls, values: Series[Any]) -> Series[bool]:
        """A whole number (epoch ms), or a string holding one; else stored as null."""
        return _flags(values, ~np.isnan(as_integer(values)))

    @pa.dataframe_check(name="sgv_required")
    def _sgv_required(cls, entries: pd.DataFrame) -> Series[bool]:
        """sgv is present on every type sgv entry."""
        return _flags(entries["sgv"], ~((entries["type"] == "sgv") & entries["sgv"].isna()).to_numpy())

    @pa.dataframe_check(name="mbg_required")
    def _mbg_required(cls, entries: pd.DataFrame) -> Series[bool]:
        """mbg is present on every type mbg entry."""
        return _flags(entries["mbg"], ~((entries["type"] == "mbg") & entries["mbg"].isna()).to_numpy())


#: Built once: pandera caches `RawGlucoseEntries.to_schema()` per thread, and runs happen on
#: worker threads.
RAW_GLUCOSE_ENTRIES_SCHEMA = RawGlucoseEntries.to_schema()


def check_severity(check: str, column: str | None) -> str:
    """Severity ("error" or "warning") of a reported check guarding `column`."""
    if check in _NAMED_SEVERITY:
        return _NAMED_SEVERITY[check]
    if column is None:
        raise KeyError(f"check {check!r} has no severity")
    return str(RAW_GLUCOSE_ENTRIES_SCHEMA.columns[column].metadata["severity"])


def check_column(check: str) -> str | None:
    """Column a dataframe-level check guards, None when it guards none."""
    return _DATAFRAME_CHECK_COLUMN.get(check)


# -- treatments -----------------------------------------------------------------------------------

# API v3 serves a document without `_id`: its `identifier` is the key (the _id's hex for a
# document created through v1, as lib/api3/storage/mongoCollection/utils.js normalizes it).
TREATMENT_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "_id": ("_id", "identifier"),
    "event_type": ("eventType", "event_type"),
    "created_at": ("created_at", "createdAt"),
    "insulin": ("insulin",),
    "carbs": ("carbs",),
    "duration": ("duration",),
    "rate": ("rate",),
    "absolute": ("absolute",),
    "entered_by": ("enteredBy", "entered_by"),
    "notes": ("notes",),
    "utc_offset": ("utcOffset", "utc_offset"),
    "is_valid": ("isValid", "is_valid"),
    "identifier": ("identifier",),
    "srv_modified": ("srvModified", "srv_modified"),
    "sync_identifier": ("syncIdentifier", "sync_identifier"),
    "uuid": ("uuid",),
    "uploader_id": ("id",),
    "pump_id": ("pumpId", "pump_id"),
    "pump_type": ("pumpType", "pump_type"),
    "pump_serial": ("pumpSerial", "pump_serial"),
    "bolus_type": ("type",),
    "is_smb": ("isSMB", "is_smb"),
    "automatic": ("automatic",),
    "percent": ("percent",),
    "amount": ("amount",),
}
INSULIN_MAX_UNITS = 100
CARBS_MAX_G = 500
DURATION_MAX_MIN = 7 * 24 * 60
_TREATMENT_NAMED_SEVERITY = {"entry_is_object": ERROR}


def as_instant_ms(values: pd.Series) -> np.ndarray:
    """Each ISO 8601 string (`Z`, an offset, with or without fractions) as epoch ms (float64);
    NaN for anything else, including strings without a zone, which name no instant."""
    text = values.where(is_text(values)).astype(object)
    zoned = np.fromiter(
        (isinstance(v, str) and _ZONED.search(v) is not None for v in text.to_numpy()),
        dtype=bool,
        count=len(text),
    )
    parsed = pd.to_datetime(text.where(zoned), utc=True, format="ISO8601", errors="coerce")
    stamps = np.asarray(parsed.to_numpy(dtype="datetime64[ms]"))
    millis = stamps.astype("int64").astype("float64")
    millis[np.isnat(stamps)] = np.nan
    return millis


_ZONED = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$")


class RawTreatments(pa.DataFrameModel):
    """One row per Nightscout treatment object, raw JSON values under the lake's column names.

    Same conventions as `RawGlucoseEntries`: no dtype checks, every conversion rule is a check on
    its own rows, a check is reported as `<column>_<name>` with its column's severity. An error
    quarantines the treatment; a warning stores the value as null.
    """

    id_: Series[Any] = pa.Field(alias="_id", metadata=_ERROR)
    event_type: Series[Any] = pa.Field(metadata=_ERROR)
    created_at: Series[Any] = pa.Field(metadata=_ERROR)
    insulin: Series[Any] = pa.Field(nullable=True, metadata=_ERROR)
    carbs: Series[Any] = pa.Field(nullable=True, metadata=_ERROR)
    duration: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    rate: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    absolute: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    entered_by: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    notes: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    utc_offset: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    is_valid: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    identifier: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    srv_modified: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    sync_identifier: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    uuid: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    uploader_id: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    pump_id: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    pump_type: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    pump_serial: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    bolus_type: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    is_smb: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    automatic: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    percent: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)
    amount: Series[Any] = pa.Field(nullable=True, metadata=_WARNING)

    class Config:
        strict = True
        metadata: ClassVar[dict[str, Any]] = {"severity": _TREATMENT_NAMED_SEVERITY, "column": {}}

    @pa.check("_id", name="is_string")
    def _id_is_string(cls, ids: Series[Any]) -> Series[bool]:
        """_id is a non-empty string (Nightscout sends a 24-hex ObjectId)."""
        return _flags(ids, is_text(ids) & (ids != "").to_numpy())

    @pa.check("_id", name="unique")
    def _id_unique(cls, ids: Series[Any]) -> Series[bool]:
        """_id is unique within the batch; the first copy is kept."""
        text = is_text(ids)
        return _flags(ids, ~(text & ids.where(text).duplicated(keep="first").to_numpy()))

    @pa.check("event_type", name="is_string")
    def _event_type_is_string(cls, types: Series[Any]) -> Series[bool]:
        """eventType is a non-empty string (any text: uploaders invent their own)."""
        return _flags(types, is_text(types) & (types != "").to_numpy())

    @pa.check("created_at", name="is_timestamp")
    def _created_at_is_timestamp(cls, stamps: Series[Any]) -> Series[bool]:
        """created_at is an ISO 8601 date-time with a zone (Z or an offset)."""
        return _flags(stamps, ~np.isnan(as_instant_ms(stamps)))

    @pa.check("created_at", name="not_before_2000")
    def _created_at_not_before_2000(cls, stamps: Series[Any]) -> Series[bool]:
        """created_at is not before 2000-01-01."""
        return _flags(stamps, _between(as_instant_ms(stamps), EPOCH_2000_MS, np.inf))

    @pa.check("created_at", name="not_in_future")
    def _created_at_not_in_future(cls, stamps: Series[Any]) -> Series[bool]:
        """created_at is at most 1 hour after the validation clock."""
        latest = stamps.attrs[NOW_MS_ATTR] + FUTURE_TOLERANCE_MS
        return _flags(stamps, _between(as_instant_ms(stamps), -np.inf, latest))

    @pa.check("insulin", "carbs", name="is_number")
    def _dose_is_number(cls, values: Series[Any]) -> Series[bool]:
        """A finite number, or a string holding one."""
        return _flags(values, ~np.isnan(as_number(values)))

    @pa.check("insulin", name="in_range")
    def _insulin_in_range(cls, insulin: Series[Any]) -> Series[bool]:
        """insulin is from 0 to 100 units."""
        return _flags(insulin, _between(as_number(insulin), 0, INSULIN_MAX_UNITS))

    @pa.check("carbs", name="in_range")
    def _carbs_in_range(cls, carbs: Series[Any]) -> Series[bool]:
        """carbs is from 0 to 500 g."""
        return _flags(carbs, _between(as_number(carbs), 0, CARBS_MAX_G))

    @pa.check("duration", "rate", "absolute", "percent", "amount", name="is_number")
    def _is_number(cls, values: Series[Any]) -> Series[bool]:
        """A finite number, or a string holding one; else stored as null."""
        return _flags(values, ~np.isnan(as_number(values)))

    @pa.check("duration", name="in_range")
    def _duration_in_range(cls, values: Series[Any]) -> Series[bool]:
        """duration is from 0 minutes to a week."""
        return _flags(values, _between(as_number(values), 0, DURATION_MAX_MIN))

    @pa.check(
        "entered_by",
        "notes",
        "identifier",
        "sync_identifier",
        "uuid",
        "uploader_id",
        "pump_type",
        "pump_serial",
        "bolus_type",
        name="is_string",
    )
    def _is_string(cls, values: Series[Any]) -> Series[bool]:
        """A string; anything else is stored as null."""
        return _flags(values, is_text(values))

    @pa.check("is_valid", "is_smb", "automatic", name="is_boolean")
    def _is_boolean(cls, values: Series[Any]) -> Series[bool]:
        """true or false; anything else is stored as null."""
        return _flags(values, is_boolean(values))

    @pa.check("srv_modified", "pump_id", name="is_integer")
    def _is_int64(cls, values: Series[Any]) -> Series[bool]:
        """A whole number, or a string holding one; else stored as null."""
        return _flags(values, ~np.isnan(as_integer(values)))

    @pa.check("utc_offset", name="is_integer")
    def _is_int32(cls, values: Series[Any]) -> Series[bool]:
        """A whole number that fits 32 bits, or a string holding one; else stored as null."""
        numbers = as_integer(values)
        return _flags(values, (numbers >= INT32_MIN) & (numbers <= INT32_MAX))


RAW_TREATMENTS_SCHEMA = RawTreatments.to_schema()
