"""Boluses and carbs (issue 7): markers for the traces, daily totals and each bolus's effect, or nothing.

The tables are built by the treatment models; a home without them (older data, no treatments uploaded)
reads as no treatments, never as an error (engine.api.treatment_reads, shared with the clinic report).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from engine.api.treatment_reads import (
    BolusOutcome,
    DailyDose,
    DayTreatments,
    automatic_share,
    daily_dose,
    load_bolus_outcomes,
    load_daily_treatments,
    optional_float,
)

if TYPE_CHECKING:
    from engine.lake.views import LakeReader


TREATMENTS = "silver.fct_treatments"


@dataclass(frozen=True)
class TreatmentMark:
    """One treatment on a trace: a bolus (insulin), a carb entry, or both (a meal bolus)."""

    ts: datetime
    insulin_units: float | None
    carbs_g: float | None


def load_marks(lake: LakeReader, branch: str, since: datetime, until: datetime) -> tuple[TreatmentMark, ...]:
    """Treatments between two instants, oldest first; none when the table does not exist."""
    if not lake.has_table(TREATMENTS):
        return ()
    rows = lake.query(
        "select treatment_ts, insulin_units, carbs_g from silver.fct_treatments "
        "where (is_bolus or is_carbs) and treatment_ts >= $since and treatment_ts <= $until "
        "order by treatment_ts",
        branch,
        params={"since": since, "until": until},
    ).rows
    return tuple(TreatmentMark(ts, optional_float(units), optional_float(carbs)) for ts, units, carbs in rows)


__all__ = [
    "BolusOutcome",
    "DailyDose",
    "DayTreatments",
    "TreatmentMark",
    "automatic_share",
    "daily_dose",
    "load_bolus_outcomes",
    "load_daily_treatments",
    "load_marks",
]
