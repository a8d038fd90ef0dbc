"""An import's rows as the lake stores them: readings as Nightscout-shaped entries, treatments, and one
import record per line (the raw.import_records table)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from schemas.imports import GLUCOSE_KINDS

ENTERED_BY = "phlo-tui import"


def _iso_utc(millis: np.ndarray) -> list[str]:
    return np.datetime_as_string(
        millis.astype("int64").astype("datetime64[ms]"), unit="ms", timezone="UTC"
    ).tolist()


def _records_table(good: pd.DataFrame, fmt: str, zone: str) -> pa.Table:
    count = len(good)
    millis = good["instant_ms"].to_numpy().astype("int64")
    glucose = good["glucose"].to_numpy()
    insulin = good["insulin"].to_numpy()
    long_insulin = good["long_insulin"].to_numpy()
    insulin_total = np.where(
        np.isnan(insulin), long_insulin, np.where(np.isnan(long_insulin), insulin, insulin + long_insulin)
    )
    carbs = good["carbs"].to_numpy()
    columns: dict[str, pa.Array] = {
        "_id": pa.array(good["_id"].to_numpy(), pa.string()),
        "import_format": pa.array([fmt] * count, pa.string()),
        "record_type": pa.array(good["record_type"].to_numpy(), pa.string()),
        "record_kind": pa.array(good["record_kind"].to_numpy(), pa.string()),
        "event_subtype": _text(good["event_subtype"]),
        "device": _text(good["device"]),
        "device_serial": _text(good["device_serial"]),
        "local_time": pa.array(good["local_time"].to_numpy(), pa.string()),
        "timezone": pa.array([zone] * count, pa.string()),
        "value_text": _text(good["value_text"]),
        "value_unit": _text(good["value_unit"]),
        "glucose_mg_dl": pa.array(np.nan_to_num(glucose).astype("int32"), pa.int32(), mask=np.isnan(glucose)),
        "value_flag": _text(good["flag"]),
        "insulin": pa.array(insulin_total, pa.float64(), mask=np.isnan(insulin_total)),
        "carbs": pa.array(carbs, pa.float64(), mask=np.isnan(carbs)),
        "notes": _text(good["notes"]),
        "record_ts": pa.array(millis * 1000, pa.timestamp("us", tz="UTC")),
        "record_month": pa.array(
            np.datetime_as_string(millis.astype("datetime64[ms]"), unit="M"), pa.string()
        ),
    }
    return pa.table(columns)


def _text(values: pd.Series) -> pa.Array:
    return pa.array(values.to_numpy(dtype=object), pa.string(), from_pandas=True)


def _offsets(millis: np.ndarray, zone: str) -> np.ndarray:
    """Each instant's UTC offset in the zone, in minutes."""
    instants = pd.DatetimeIndex(millis.astype("int64").astype("datetime64[ms]"), tz="UTC").as_unit("ns")
    local = instants.tz_convert(zone).tz_localize(None)
    return ((local.asi8 - instants.tz_localize(None).asi8) // 60_000_000_000).astype("int64")


def _readings(good: pd.DataFrame, fmt: str, zone: str) -> pd.DataFrame:
    """Readings (sgv) and finger-sticks (mbg: Clarity calibrations, LibreView strips), in columns."""
    kinds = good["record_kind"].to_numpy()
    glucose = good["glucose"].to_numpy()
    chosen = good[np.isin(kinds, list(GLUCOSE_KINDS - {"scan"})) & ~np.isnan(glucose)]
    millis = chosen["instant_ms"].to_numpy().astype("int64")
    return pd.DataFrame(
        {
            "_id": chosen["_id"].to_numpy(),
            "kind": chosen["record_kind"].to_numpy(),
            "date": millis,
            "value": chosen["glucose"].to_numpy().astype("int64"),
            "device": (chosen["device"].fillna(fmt).astype(str) + f" ({fmt} import)").to_numpy(),
            "offset": _offsets(millis, zone),
        }
    )


def _treatments(good: pd.DataFrame, fmt: str) -> list[dict[str, Any]]:
    """Insulin and carbs as Nightscout treatments: rapid-acting insulin a Correction Bolus, carbs a
    Carb Correction, as Nightscout's Care Portal names them; long-acting insulin a Long-Acting Insulin
    event, which no model counts as a bolus."""
    treatments: list[dict[str, Any]] = []
    for column, event, key in (
        ("insulin", "Correction Bolus", "insulin"),
        ("long_insulin", "Long-Acting Insulin", "insulin"),
        ("carbs", "Carb Correction", "carbs"),
    ):
        values = good[column].to_numpy()
        wanted = ~np.isnan(values) & (values > 0)
        if not wanted.any():
            continue
        chosen = good[wanted]
        millis = chosen["instant_ms"].to_numpy().astype("int64")
        suffix = "" if column != "long_insulin" or fmt == "clarity" else "-long"
        for entry_id, amount, iso, notes in zip(
            chosen["_id"].to_numpy(),
            values[wanted],
            _iso_utc(millis),
            chosen["notes"].to_numpy(),
            strict=True,
        ):
            treatment: dict[str, Any] = {
                "_id": f"{entry_id}{suffix}",
                "eventType": event,
                "created_at": iso,
                key: float(amount),
                "enteredBy": f"{ENTERED_BY} ({fmt})",
            }
            if isinstance(notes, str) and notes:
                treatment["notes"] = notes
            treatments.append(treatment)
    treatments.sort(key=lambda t: t["created_at"])
    return treatments
