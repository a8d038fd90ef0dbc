"""Pandera checks guarding the marts (daily overview, hourly patterns, medication effectiveness), each with its severity."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.gold import FORMULA_TOLERANCE, percentiles_in_order
from schemas.raw import CARBS_MAX_G, INSULIN_MAX_UNITS
from schemas.silver import DAY_NAMES, ERROR, MONTH_PATTERN

RATINGS = ("Excellent", "Good", "Needs Improvement", "Critical")
MIN_READINGS_PER_DAY = 12
# Mean glucose of a window lies where readings lie (silver keeps 20..600 mg/dL).
GLUCOSE_WINDOW_MIN, GLUCOSE_WINDOW_MAX = 20, 600
MINUTES_IN_4H = 240
# A value rounded to one decimal is off by at most half a unit of the last place.
HALF_TENTH = 0.05 + FORMULA_TOLERANCE


def is_rounded(values: pd.Series, decimals: int) -> pd.Series:
    """True where a value has no more than `decimals` decimals (missing values pass)."""
    return ((values - values.round(decimals)).abs() <= 1e-9) | values.isna()


class MrtGlucoseOverview(pa.DataFrameModel):
    """Days with more than 12 readings, rounded for display; dataframe checks take their severity from Config.metadata."""

    reading_date: Series[pa.DateTime] = pa.Field(unique=True, metadata=ERROR)
    day_name: Series[str] = pa.Field(isin=DAY_NAMES, metadata=ERROR)
    reading_count: Series[int] = pa.Field(gt=MIN_READINGS_PER_DAY, metadata=ERROR)
    avg_glucose_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    time_in_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    estimated_a1c_pct: Series[float] = pa.Field(
        ge=round(3.31 + 0.02392 * 20, 2), le=round(3.31 + 0.02392 * 600, 2), metadata=ERROR
    )
    diabetes_management_rating: Series[str] = pa.Field(isin=RATINGS, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {
                "rounded_for_display": "error",
                "gmi_matches_mean": "error",
                "rating_matches_time_in_range": "error",
            }
        }

    @pa.dataframe_check
    @classmethod
    def rounded_for_display(cls, df: pd.DataFrame) -> pd.Series:
        """Mean and TIR have 1 decimal, GMI 2."""
        return (
            is_rounded(df["avg_glucose_mg_dl"], 1)
            & is_rounded(df["time_in_range_pct"], 1)
            & is_rounded(df["estimated_a1c_pct"], 2)
        )

    @pa.dataframe_check
    @classmethod
    def gmi_matches_mean(cls, df: pd.DataFrame) -> pd.Series:
        """GMI is 3.31 + 0.02392 x mean glucose, within the rounding of both."""
        # Both are rounded from the same unrounded mean: GMI by 0.005, the mean by 0.05 mg/dL.
        tolerance = 0.005 + 0.02392 * 0.05 + FORMULA_TOLERANCE
        return (df["estimated_a1c_pct"] - (3.31 + 0.02392 * df["avg_glucose_mg_dl"])).abs() <= tolerance

    @pa.dataframe_check
    @classmethod
    def rating_matches_time_in_range(cls, df: pd.DataFrame) -> pd.Series:
        """The rating's TIR threshold (70/50/30) agrees with the displayed TIR."""
        # The rating reads the unrounded TIR, so a displayed 70.0 may rate Good (69.96 unrounded).
        tir = df["time_in_range_pct"]
        lowest = tir - HALF_TENTH
        highest = tir + HALF_TENTH
        floors = {"Excellent": 70.0, "Good": 50.0, "Needs Improvement": 30.0, "Critical": 0.0}
        ceilings = {
            "Excellent": 100.0 + HALF_TENTH,
            "Good": 70.0,
            "Needs Improvement": 50.0,
            "Critical": 30.0,
        }
        floor = df["diabetes_management_rating"].map(floors).astype("float64")
        ceiling = df["diabetes_management_rating"].map(ceilings).astype("float64")
        return (highest >= floor) & (lowest < ceiling)


class MrtGlucoseHourlyPatterns(pa.DataFrameModel):
    """Glucose by local hour over the trailing 90 days, rounded; dataframe checks take their severity from Config.metadata."""

    hour_of_day: Series[int] = pa.Field(ge=0, le=23, unique=True, metadata=ERROR)
    reading_count: Series[int] = pa.Field(gt=0, metadata=ERROR)
    avg_glucose_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    stddev_glucose_mg_dl: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    cv_pct: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    p05_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    p25_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    p50_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    p75_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    p95_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    time_in_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_below_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_above_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    window_start: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    window_end: Series[pa.DateTime] = pa.Field(metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {
                "percentiles_ordered": "error",
                "bands_sum_to_100": "error",
                "window_is_90_days": "error",
            }
        }

    @pa.dataframe_check
    @classmethod
    def percentiles_ordered(cls, df: pd.DataFrame) -> pd.Series:
        """p05 <= p25 <= p50 <= p75 <= p95, all present (the mart keeps only hours with readings)."""
        return percentiles_in_order(df, allow_missing=False)

    @pa.dataframe_check
    @classmethod
    def bands_sum_to_100(cls, df: pd.DataFrame) -> pd.Series:
        """Below, in and above range add up to 100 %, within rounding."""
        # Three values each rounded to 0.1 add up to 100 within 0.15.
        total = df["time_below_range_pct"] + df["time_in_range_pct"] + df["time_above_range_pct"]
        return (total - 100).abs() <= 3 * HALF_TENTH

    @pa.dataframe_check
    @classmethod
    def window_is_90_days(cls, df: pd.DataFrame) -> pd.Series:
        """The window covers 90 local days."""
        return (df["window_end"] - df["window_start"]) == pd.Timedelta(days=89)


class MrtMedicationEffectiveness(pa.DataFrameModel):
    """One bolus per row with the glucose around it; dataframe checks take their severity from Config.metadata."""

    treatment_id: Series[str] = pa.Field(unique=True, metadata=ERROR)
    bolus_local_ts: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    reading_date: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    event_type: Series[str] = pa.Field(metadata=ERROR)
    insulin_units: Series[float] = pa.Field(gt=0, le=INSULIN_MAX_UNITS, metadata=ERROR)
    carbs_g: Series[float] = pa.Field(gt=0, le=CARBS_MAX_G, nullable=True, metadata=ERROR)
    glucose_before: Series[float] = pa.Field(
        ge=GLUCOSE_WINDOW_MIN, le=GLUCOSE_WINDOW_MAX, nullable=True, metadata=ERROR
    )
    glucose_after: Series[float] = pa.Field(
        ge=GLUCOSE_WINDOW_MIN, le=GLUCOSE_WINDOW_MAX, nullable=True, metadata=ERROR
    )
    glucose_reduction: Series[float] = pa.Field(nullable=True, metadata=ERROR)
    minutes_to_min_after: Series[float] = pa.Field(gt=0, le=MINUTES_IN_4H, nullable=True, metadata=ERROR)
    min_glucose_after: Series[pd.Int64Dtype] = pa.Field(
        ge=GLUCOSE_WINDOW_MIN, le=GLUCOSE_WINDOW_MAX, nullable=True, metadata=ERROR
    )
    hypo_within_4h: Series[pd.BooleanDtype] = pa.Field(nullable=True, metadata=ERROR)
    is_automatic: Series[bool] = pa.Field(metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {"reduction_is_difference": "error", "hypo_matches_minimum": "error"}
        }

    @pa.dataframe_check
    @classmethod
    def reduction_is_difference(cls, df: pd.DataFrame) -> pd.Series:
        """glucose_reduction is before - after (within their rounding), null when either is."""
        either_null = df["glucose_before"].isna() | df["glucose_after"].isna()
        diff = (df["glucose_before"] - df["glucose_after"] - df["glucose_reduction"]).abs()
        return (either_null & df["glucose_reduction"].isna()) | (~either_null & (diff <= 0.1 + 1e-9))

    @pa.dataframe_check
    @classmethod
    def hypo_matches_minimum(cls, df: pd.DataFrame) -> pd.Series:
        """hypo_within_4h says whether the 4-hour minimum is below 70; both null without readings."""
        minimum = df["min_glucose_after"].astype("Float64")
        hypo = df["hypo_within_4h"].astype("boolean")
        same_nulls = minimum.isna() == hypo.isna()
        agrees = (minimum < 70).fillna(False) == hypo.fillna(False)
        return same_nulls & agrees & (minimum.isna() == df["minutes_to_min_after"].isna())
