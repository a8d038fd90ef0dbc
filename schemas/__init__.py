"""Pandera models, one module per layer; `TABLE_SCHEMAS` says which model guards which lake table."""

from __future__ import annotations

import pandera.pandas as pa

from schemas.bronze import StgGlucoseEntries, StgTreatments
from schemas.gold import (
    FactDailyBasalInsulin,
    FactDailyGlucoseMetrics,
    FactDailyTreatmentTotals,
    FactHourlyGlucoseProfile,
)
from schemas.marts import MrtGlucoseHourlyPatterns, MrtGlucoseOverview, MrtMedicationEffectiveness
from schemas.silver import FactGlucoseReadings, FactTreatments

TABLE_SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "bronze.stg_glucose_entries": StgGlucoseEntries,
    "silver.fct_glucose_readings": FactGlucoseReadings,
    "gold.fct_daily_glucose_metrics": FactDailyGlucoseMetrics,
    "gold.fct_hourly_glucose_profile": FactHourlyGlucoseProfile,
    "marts.mrt_glucose_overview": MrtGlucoseOverview,
    "marts.mrt_glucose_hourly_patterns": MrtGlucoseHourlyPatterns,
    "bronze.stg_treatments": StgTreatments,
    "silver.fct_treatments": FactTreatments,
    "gold.fct_daily_basal_insulin": FactDailyBasalInsulin,
    "gold.fct_daily_treatment_totals": FactDailyTreatmentTotals,
    "marts.mrt_medication_effectiveness": MrtMedicationEffectiveness,
}
