"""Pandera checks guarding the gold tables (daily metrics, hourly AGP, daily treatment totals), each with its severity."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.silver import DAY_NAMES, ERROR, MONTH_PATTERN

PERCENTILE_COLUMNS = ("p05_mg_dl", "p25_mg_dl", "p50_mg_dl", "p75_mg_dl", "p95_mg_dl")


def percentiles_in_order(df: pd.DataFrame, *, allow_missing: bool) -> pd.Series:
    """True where p05 <= p25 <= p50 <= p75 <= p95. With `allow_missing`, a row whose percentiles are
    all missing (a window without readings) also passes; otherwise it fails."""
    p = df[list(PERCENTILE_COLUMNS)]
    ordered = (p.diff(axis=1).iloc[:, 1:] >= 0).all(axis=1) & p.notna().all(axis=1)
    return ordered | p.isna().all(axis=1) if allow_missing else ordered


# Floating sums of five shares of the same count; anything beyond this is a wrong band.
BAND_SUM_TOLERANCE = 0.01
FORMULA_TOLERANCE = 1e-6
# docs/metrics.md: metrics need 70 % of the expected readings to be representative.
MIN_REPRESENTATIVE_COVERAGE_PCT = 70.0
AGP_DAYS = 14
READINGS_PER_HOUR = 12
MAX_DAY_MINUTES = 25 * 60  # a local day that gains an hour at a DST change


class FactDailyGlucoseMetrics(pa.DataFrameModel):
    """One local calendar day per row, unrounded; dataframe checks take their severity from Config.metadata."""

    reading_date: Series[pa.DateTime] = pa.Field(unique=True, metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)
    day_name: Series[str] = pa.Field(isin=DAY_NAMES, metadata=ERROR)
    reading_count: Series[int] = pa.Field(gt=0, metadata=ERROR)
    avg_glucose_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    stddev_glucose_mg_dl: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    min_glucose_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    max_glucose_mg_dl: Series[float] = pa.Field(ge=20, le=600, metadata=ERROR)
    time_in_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_below_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_above_range_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_very_low_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_low_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_high_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    time_very_high_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    cv_pct: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    estimated_a1c_pct: Series[float] = pa.Field(
        ge=3.31 + 0.02392 * 20, le=3.31 + 0.02392 * 600, metadata=ERROR
    )
    gri: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    lbgi: Series[float] = pa.Field(ge=0, metadata=ERROR)
    hbgi: Series[float] = pa.Field(ge=0, metadata=ERROR)
    expected_reading_count: Series[int] = pa.Field(gt=0, metadata=ERROR)
    coverage_pct: Series[float] = pa.Field(ge=0, le=100, metadata=ERROR)
    sensor_error_count: Series[int] = pa.Field(ge=0, metadata=ERROR)
    hypo_episodes_l1: Series[int] = pa.Field(ge=0, metadata=ERROR)
    hypo_episodes_l2: Series[int] = pa.Field(ge=0, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {
                "bands_sum_to_100": "error",
                "below_and_above_match_bands": "error",
                "gmi_matches_mean": "error",
                "cv_matches_sd_and_mean": "error",
                "mean_within_min_and_max": "error",
                "month_matches_date": "error",
                "coverage_representative": "warning",
            }
        }

    @pa.dataframe_check
    @classmethod
    def bands_sum_to_100(cls, df: pd.DataFrame) -> pd.Series:
        """The five consensus bands add up to 100 %."""
        bands = [
            "time_very_low_pct",
            "time_low_pct",
            "time_in_range_pct",
            "time_high_pct",
            "time_very_high_pct",
        ]
        return (df[bands].sum(axis=1) - 100).abs() <= BAND_SUM_TOLERANCE

    @pa.dataframe_check
    @classmethod
    def below_and_above_match_bands(cls, df: pd.DataFrame) -> pd.Series:
        """Below range is very low + low; above range is high + very high."""
        below = df["time_very_low_pct"] + df["time_low_pct"] - df["time_below_range_pct"]
        above = df["time_high_pct"] + df["time_very_high_pct"] - df["time_above_range_pct"]
        return (below.abs() <= FORMULA_TOLERANCE) & (above.abs() <= FORMULA_TOLERANCE)

    @pa.dataframe_check
    @classmethod
    def gmi_matches_mean(cls, df: pd.DataFrame) -> pd.Series:
        """GMI is 3.31 + 0.02392 x mean glucose."""
        return (
            df["estimated_a1c_pct"] - (3.31 + 0.02392 * df["avg_glucose_mg_dl"])
        ).abs() <= FORMULA_TOLERANCE

    @pa.dataframe_check
    @classmethod
    def cv_matches_sd_and_mean(cls, df: pd.DataFrame) -> pd.Series:
        """CV is 100 x SD / mean."""
        expected = 100 * df["stddev_glucose_mg_dl"] / df["avg_glucose_mg_dl"]
        return ((df["cv_pct"] - expected).abs() <= FORMULA_TOLERANCE) | (
            df["cv_pct"].isna() & expected.isna()
        )

    @pa.dataframe_check
    @classmethod
    def mean_within_min_and_max(cls, df: pd.DataFrame) -> pd.Series:
        """Mean glucose lies between the day's minimum and maximum."""
        return (df["min_glucose_mg_dl"] <= df["avg_glucose_mg_dl"] + FORMULA_TOLERANCE) & (
            df["avg_glucose_mg_dl"] <= df["max_glucose_mg_dl"] + FORMULA_TOLERANCE
        )

    @pa.dataframe_check
    @classmethod
    def month_matches_date(cls, df: pd.DataFrame) -> pd.Series:
        """reading_month is the YYYY-MM of reading_date."""
        return df["reading_month"] == df["reading_date"].dt.strftime("%Y-%m")

    @pa.dataframe_check
    @classmethod
    def coverage_representative(cls, df: pd.DataFrame) -> pd.Series:
        """At least 70 % of the day's expected readings are present."""
        return df["coverage_pct"] >= MIN_REPRESENTATIVE_COVERAGE_PCT


class FactHourlyGlucoseProfile(pa.DataFrameModel):
    """The 14-day AGP by local hour; dataframe checks take their severity from Config.metadata."""

    hour_of_day: Series[int] = pa.Field(ge=0, le=23, unique=True, metadata=ERROR)
    reading_count: Series[int] = pa.Field(ge=0, metadata=ERROR)
    p05_mg_dl: Series[float] = pa.Field(ge=20, le=600, nullable=True, metadata=ERROR)
    p25_mg_dl: Series[float] = pa.Field(ge=20, le=600, nullable=True, metadata=ERROR)
    p50_mg_dl: Series[float] = pa.Field(ge=20, le=600, nullable=True, metadata=ERROR)
    p75_mg_dl: Series[float] = pa.Field(ge=20, le=600, nullable=True, metadata=ERROR)
    p95_mg_dl: Series[float] = pa.Field(ge=20, le=600, nullable=True, metadata=ERROR)
    window_start: Series[pa.DateTime] = pa.Field(metadata=ERROR)
    window_end: Series[pa.DateTime] = pa.Field(metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {
                "percentiles_ordered": "error",
                "percentiles_present_when_readings": "error",
                "window_is_14_days": "error",
                "all_24_hours": "error",
                "hour_representative": "warning",
            }
        }

    @pa.dataframe_check
    @classmethod
    def percentiles_ordered(cls, df: pd.DataFrame) -> pd.Series:
        """p05 <= p25 <= p50 <= p75 <= p95; an hour without readings has none."""
        return percentiles_in_order(df, allow_missing=True)

    @pa.dataframe_check
    @classmethod
    def percentiles_present_when_readings(cls, df: pd.DataFrame) -> pd.Series:
        """An hour has percentiles exactly when it has readings."""
        return df["p50_mg_dl"].notna() == (df["reading_count"] > 0)

    @pa.dataframe_check
    @classmethod
    def window_is_14_days(cls, df: pd.DataFrame) -> pd.Series:
        """The window covers 14 local days."""
        return (df["window_end"] - df["window_start"]) == pd.Timedelta(days=AGP_DAYS - 1)

    @pa.dataframe_check
    @classmethod
    def all_24_hours(cls, df: pd.DataFrame) -> bool:
        """Every hour of the day 0..23 has a row."""
        return df.empty or set(df["hour_of_day"]) == set(range(24))

    @pa.dataframe_check
    @classmethod
    def hour_representative(cls, df: pd.DataFrame) -> pd.Series:
        """The hour has at least 70 % of its 14 days x 12 expected readings."""
        return df["reading_count"] >= AGP_DAYS * READINGS_PER_HOUR * MIN_REPRESENTATIVE_COVERAGE_PCT / 100


class FactDailyTreatmentTotals(pa.DataFrameModel):
    """Bolus insulin and carbs per local day; dataframe checks take their severity from Config.metadata."""

    reading_date: Series[pa.DateTime] = pa.Field(unique=True, metadata=ERROR)
    total_insulin_units: Series[float] = pa.Field(ge=0, metadata=ERROR)
    total_carbs_g: Series[float] = pa.Field(ge=0, metadata=ERROR)
    automatic_insulin_units: Series[float] = pa.Field(ge=0, metadata=ERROR)
    bolus_count: Series[int] = pa.Field(ge=0, metadata=ERROR)
    carb_entry_count: Series[int] = pa.Field(ge=0, metadata=ERROR)
    basal_insulin_units: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    total_daily_dose_units: Series[float] = pa.Field(ge=0, nullable=True, metadata=ERROR)
    basal_share: Series[float] = pa.Field(ge=0, le=1, nullable=True, metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
        metadata: ClassVar[dict[str, dict[str, str]]] = {
            "severity": {"totals_match_counts": "error", "dose_is_bolus_plus_basal": "error"}
        }

    @pa.dataframe_check
    @classmethod
    def dose_is_bolus_plus_basal(cls, df: pd.DataFrame) -> pd.Series:
        """The total daily dose is bolus plus basal insulin, known exactly when the basal is."""
        basal = df["basal_insulin_units"]
        expected = df["total_insulin_units"] + basal
        return (basal.isna() & df["total_daily_dose_units"].isna()) | (
            (df["total_daily_dose_units"] - expected).abs() <= 1e-6
        )

    @pa.dataframe_check
    @classmethod
    def totals_match_counts(cls, df: pd.DataFrame) -> pd.Series:
        """A day has events or basal, insulin exactly when it has boluses and carbs exactly when it
        has carb entries, and no more automatic insulin than insulin."""
        return (
            (((df["bolus_count"] + df["carb_entry_count"]) > 0) | df["basal_insulin_units"].notna())
            & (df["automatic_insulin_units"] <= df["total_insulin_units"] + 1e-9)
            & ((df["total_insulin_units"] > 0) == (df["bolus_count"] > 0))
            & ((df["total_carbs_g"] > 0) == (df["carb_entry_count"] > 0))
        )


class FactDailyBasalInsulin(pa.DataFrameModel):
    """Basal insulin per local day, counted minute by minute from the schedule and the temp basals."""

    reading_date: Series[pa.DateTime] = pa.Field(unique=True, metadata=ERROR)
    basal_insulin_units: Series[float] = pa.Field(ge=0, metadata=ERROR)
    scheduled_basal_units: Series[float] = pa.Field(ge=0, metadata=ERROR)
    temp_basal_minutes: Series[int] = pa.Field(ge=0, le=MAX_DAY_MINUTES, metadata=ERROR)
    counted_minutes: Series[int] = pa.Field(gt=0, le=MAX_DAY_MINUTES, metadata=ERROR)
    is_complete: Series[bool] = pa.Field(metadata=ERROR)
    reading_month: Series[str] = pa.Field(str_matches=MONTH_PATTERN, metadata=ERROR)

    class Config:
        coerce = True
        strict = True
