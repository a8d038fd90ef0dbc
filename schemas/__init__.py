"""Pandera models, one module per layer; `TABLE_SCHEMAS` says which model guards which lake table."""

from __future__ import annotations

import pandera.pandas as pa

from schemas.bronze import StgGlucoseEntries
from schemas.gold import FactDailyGlucoseMetrics, FactHourlyGlucoseProfile
from schemas.marts import MrtGlucoseHourlyPatterns, MrtGlucoseOverview
from schemas.silver import FactGlucoseReadings

TABLE_SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "bronze.stg_glucose_entries": StgGlucoseEntries,
    "silver.fct_glucose_readings": FactGlucoseReadings,
    "gold.fct_daily_glucose_metrics": FactDailyGlucoseMetrics,
    "gold.fct_hourly_glucose_profile": FactHourlyGlucoseProfile,
    "marts.mrt_glucose_overview": MrtGlucoseOverview,
    "marts.mrt_glucose_hourly_patterns": MrtGlucoseHourlyPatterns,
}
