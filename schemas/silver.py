"""Pandera checks guarding the silver models (glucose readings, treatments), each with its severity (error blocks, warning reports)."""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.raw import CARBS_MAX_G, INSULIN_MAX_UNITS

ERROR = {"severity": "error"}
WARNING = {"severity": "warning"}

GLUCOSE_CATEGORIES = ("very_low", "low", "in_range", "high", "very_high")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
# Faster than about 4 mg/dL/min is rare in physiology; 10 is a sensor artefact (compression low,
# calibration jump) more often than glucose, and worth a look, not a block.
MAX_PLAUSIBLE_RATE_MG_DL_PER_MIN = 10.0


def glucose_category(glucose: pd.Series) -> pd.Series:
    """The consensus band of each value, with the boundaries of docs/metrics.md."""
    conditions = [glucose < 54, glucose < 70, glucose <= 180, glucose <= 250]
    return pd.Series(np.select(conditions, GLUCOSE_CATEGORIES[:4], default="very_high"), index=glucose.index)


class FactGlucoseReadings(pa.DataFrameModel):
    """One valid reading per row; dataframe checks take their severity from Config.metadata."""

    entry_id: Series[str] = pa.Field(unique=True, metadata=ERROR)
    reading_ts: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]] = pa.Field(metadata=ERROR)
    reading_local_ts: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    reading_date: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)
    hour_of_day: Series[int] = pa.Field(ge=0, le=23, metadata=ERROR)
    day_of_week: Series[int] = pa.Field(ge=1, le=7, metadata=ERROR)
    day_name: Series[str] = pa.Field(isin=DAY_NAMES, metadata=ERROR)
    glucose_mg_dl: Series[int] = pa.Field(ge=20, le=600, metadata=ERROR)
    glucose_mmol_l: Series[float] = pa.Field(ge=20 / 18.018, le=600 / 18.018, metadata=ERROR)
    glucose_category: Series[str] = pa.Field(isin=GLUCOSE_CATEGORIES, metadata=ERROR)
    is_in_range: Series[bool] = pa.Field(metadata=ERROR)
    glucose_change_mg_dl: Series[pd.Int64Dtype] = pa.Field(nullable=True, metadata=ERROR)
    minutes_since_last_reading: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    direction: Series[str] = pa.Field(nullable=True, metadata=ERROR)
    trend: Series[pd.Int64Dtype] = pa.Field(nullable=True, metadata=ERROR)
    device: Series[str] = pa.Field(nullable=True, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {
                "category_matches_glucose": "error",
                "in_range_matches_glucose": "error",
                "date_matches_local_time": "error",
                "month_matches_date": "error",
                "plausible_rate_of_change": "warning",
            }
        }

    @pa.dataframe_check
    @classmethod
    def category_matches_glucose(cls, df: pd.DataFrame) -> pd.Series:
        """glucose_category is the consensus band of glucose_mg_dl (docs/metrics.md)."""
        return df["glucose_category"] == glucose_category(df["glucose_mg_dl"])

    @pa.dataframe_check
    @classmethod
    def in_range_matches_glucose(cls, df: pd.DataFrame) -> pd.Series:
        """is_in_range is 70 <= glucose_mg_dl <= 180."""
        return df["is_in_range"] == df["glucose_mg_dl"].between(70, 180)

    @pa.dataframe_check
    @classmethod
    def date_matches_local_time(cls, df: pd.DataFrame) -> pd.Series:
        """reading_date is the local calendar day of reading_local_ts."""
        return df["reading_local_ts"].dt.normalize() == df["reading_date"]

    @pa.dataframe_check
    @classmethod
    def month_matches_date(cls, df: pd.DataFrame) -> pd.Series:
        """reading_month is the YYYY-MM of reading_date."""
        return df["reading_month"] == df["reading_date"].dt.strftime("%Y-%m")

    @pa.dataframe_check
    @classmethod
    def plausible_rate_of_change(cls, df: pd.DataFrame) -> pd.Series:
        """Glucose changes by at most 10 mg/dL per minute since the device's previous reading."""
        minutes = df["minutes_since_last_reading"]
        rate = df["glucose_change_mg_dl"].abs().astype("float64") / minutes.where(minutes > 0)
        return ~(rate > MAX_PLAUSIBLE_RATE_MG_DL_PER_MIN).fillna(False)


class FactTreatments(pa.DataFrameModel):
    """Bolus and carb events in local time; dataframe checks take their severity from Config.metadata."""

    treatment_id: Series[str] = pa.Field(unique=True, metadata=ERROR)
    event_type: Series[str] = pa.Field(metadata=ERROR)
    treatment_ts: Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]] = pa.Field(metadata=ERROR)
    treatment_local_ts: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    reading_date: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    insulin_units: Series[float] = pa.Field(gt=0, le=INSULIN_MAX_UNITS, nullable=True, metadata=ERROR)
    carbs_g: Series[float] = pa.Field(gt=0, le=CARBS_MAX_G, nullable=True, metadata=ERROR)
    is_bolus: Series[bool] = pa.Field(metadata=ERROR)
    is_carbs: Series[bool] = pa.Field(metadata=ERROR)
    is_automatic: Series[bool] = pa.Field(metadata=ERROR)
    is_temp_basal: Series[bool] = pa.Field(metadata=ERROR)
    duration_min: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    basal_rate_u_h: Series[float] = pa.Field(ge=0, nullable=True, metadata=WARNING)
    basal_percent: Series[float] = pa.Field(ge=-100, nullable=True, metadata=WARNING)
    basal_delivered_units: Series[float] = pa.Field(ge=0, nullable=True, metadata=WARNING)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {"flags_match_values": "error", "date_is_local_day": "error"}
        }

    @pa.dataframe_check
    @classmethod
    def flags_match_values(cls, df: pd.DataFrame) -> pd.Series:
        """A bolus has insulin and a carb entry carbs; every row is at least one of them or a temp
        basal, and only a temp basal has a duration; only a bolus is automatic."""
        return (
            (df["is_bolus"] == df["insulin_units"].notna())
            & (df["is_bolus"] | ~df["is_automatic"])
            & (df["is_carbs"] == df["carbs_g"].notna())
            & (df["is_bolus"] | df["is_carbs"] | df["is_temp_basal"])
            & (df["is_temp_basal"] == df["duration_min"].notna())
        )

    @pa.dataframe_check
    @classmethod
    def date_is_local_day(cls, df: pd.DataFrame) -> pd.Series:
        """reading_date and reading_month are the local day and month of treatment_local_ts."""
        local = pd.to_datetime(df["treatment_local_ts"])
        return (local.dt.normalize() == pd.to_datetime(df["reading_date"])) & (
            local.dt.strftime("%Y-%m") == df["reading_month"]
        )
