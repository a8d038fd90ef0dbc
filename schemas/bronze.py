"""Pandera checks guarding the bronze models (glucose entries, treatments), each with its severity (error blocks, warning reports)."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.raw import CARBS_MAX_G, INSULIN_MAX_UNITS
from schemas.silver import ERROR, MONTH_PATTERN, WARNING

# Nightscout sgv below 39 are sensor error codes (docs/nightscout.md), not glucose.
MIN_GLUCOSE_CODE = 39
MAX_PLAUSIBLE_GLUCOSE = 600
# Nightscout's canonical names for the events that carry a dose (insulin or carbs).
DOSE_EVENT_TYPES = (
    "Meal Bolus",
    "Snack Bolus",
    "Bolus Wizard",
    "Correction Bolus",
    "Combo Bolus",
    "Carb Correction",
)
UTC_TS = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]


class StgGlucoseEntries(pa.DataFrameModel):
    """Sensor glucose entries, error codes flagged; dataframe checks take their severity from Config.metadata."""

    entry_id: Series[str] = pa.Field(unique=True, metadata=ERROR)
    glucose_mg_dl: Series[pd.Int64Dtype] = pa.Field(ge=MIN_GLUCOSE_CODE, nullable=True, metadata=ERROR)
    reading_ts: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]] = pa.Field(metadata=ERROR)
    reading_local_ts: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    reading_epoch_ms: Series[int] = pa.Field(metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)
    direction: Series[str] = pa.Field(nullable=True, metadata=ERROR)
    trend: Series[pd.Int64Dtype] = pa.Field(nullable=True, metadata=ERROR)
    noise: Series[pd.Int64Dtype] = pa.Field(nullable=True, metadata=ERROR)
    device: Series[str] = pa.Field(nullable=True, metadata=ERROR)
    is_sensor_error: Series[bool] = pa.Field(metadata=ERROR)
    sensor_error_code: Series[pd.Int64Dtype] = pa.Field(
        ge=0, lt=MIN_GLUCOSE_CODE, nullable=True, metadata=ERROR
    )
    # pandera skips attributes starting with "_", so the bookkeeping columns go by alias.
    phlo_run_id: Series[str] = pa.Field(alias="_phlo_run_id", metadata=ERROR)
    phlo_ingested_at: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]] = pa.Field(
        alias="_phlo_ingested_at", metadata=ERROR
    )

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {
                "error_flag_matches_code": "error",
                "glucose_possible": "warning",
            }
        }

    @pa.dataframe_check
    @classmethod
    def error_flag_matches_code(cls, df: pd.DataFrame) -> pd.Series:
        """Error rows have a code and no glucose; readings have glucose and no code."""
        return (df["is_sensor_error"] == df["sensor_error_code"].notna()) & (
            df["is_sensor_error"] == df["glucose_mg_dl"].isna()
        )

    @pa.dataframe_check
    @classmethod
    def glucose_possible(cls, df: pd.DataFrame) -> pd.Series:
        """Glucose is at most 600 mg/dL."""
        # Above 600 mg/dL is physiologically impossible; silver drops such rows, this says how many.
        return ~(df["glucose_mg_dl"] > MAX_PLAUSIBLE_GLUCOSE).fillna(False)


class StgTreatments(pa.DataFrameModel):
    """Every treatment typed, in local time; dataframe checks take their severity from Config.metadata."""

    treatment_id: Series[str] = pa.Field(unique=True, metadata=ERROR)
    event_type: Series[str] = pa.Field(metadata=ERROR)
    event_type_raw: Series[str] = pa.Field(metadata=ERROR)
    treatment_ts: Series[UTC_TS] = pa.Field(metadata=ERROR)
    treatment_local_ts: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)
    insulin_units: Series[float] = pa.Field(ge=0, le=INSULIN_MAX_UNITS, nullable=True, metadata=ERROR)
    carbs_g: Series[float] = pa.Field(ge=0, le=CARBS_MAX_G, nullable=True, metadata=ERROR)
    duration_min: Series[float] = pa.Field(ge=0, nullable=True, metadata=WARNING)
    basal_rate_u_h: Series[float] = pa.Field(ge=0, nullable=True, metadata=WARNING)
    basal_percent: Series[float] = pa.Field(ge=-100, nullable=True, metadata=WARNING)
    basal_delivered_units: Series[float] = pa.Field(ge=0, nullable=True, metadata=WARNING)
    is_bolus: Series[bool] = pa.Field(metadata=ERROR)
    is_carbs: Series[bool] = pa.Field(metadata=ERROR)
    is_automatic: Series[bool] = pa.Field(metadata=ERROR)
    is_calculation: Series[bool] = pa.Field(metadata=ERROR)
    entered_by: Series[str] = pa.Field(nullable=True, metadata=WARNING)
    notes: Series[str] = pa.Field(nullable=True, metadata=WARNING)
    phlo_run_id: Series[str] = pa.Field(alias="_phlo_run_id", metadata=ERROR)
    phlo_ingested_at: Series[UTC_TS] = pa.Field(alias="_phlo_ingested_at", metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {"severity": {"known_event_type": "warning"}}

    @pa.dataframe_check
    @classmethod
    def known_event_type(cls, df: pd.DataFrame) -> pd.Series:
        """A dose (insulin or carbs) comes with an event type Nightscout defines for doses."""
        dose = df["is_bolus"] | df["is_carbs"]
        return ~dose | df["event_type"].isin(DOSE_EVENT_TYPES)
