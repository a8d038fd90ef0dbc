"""Reads of the treatment tables the dashboard's Charts page and the clinic report share: insulin (bolus,
basal, the total daily dose) and carbs per local day, and each bolus with what glucose did after it.

The tables are built by the treatment models; a home without them (older data, no treatments uploaded)
reads as no treatments, never as an error. Imports nothing heavy: the early reads import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.lake.views import LakeReader


DAILY_TREATMENTS = "gold.fct_daily_treatment_totals"
EFFECTIVENESS = "marts.mrt_medication_effectiveness"


@dataclass(frozen=True)
class DayTreatments:
    day: date
    insulin_units: float
    carbs_g: float
    boluses: int
    carb_entries: int
    automatic_units: float = 0.0
    """The part of `insulin_units` the loop gave by itself (SMBs, Loop's automatic boluses)."""
    basal_units: float | None = None
    """Basal insulin of the day (the profile's schedule, replaced where temp basals ran); None when
    the site serves no profile and no temp basal covers the day."""

    @property
    def total_daily_dose(self) -> float | None:
        """Bolus plus basal insulin; None when the basal is unknown."""
        return None if self.basal_units is None else self.insulin_units + self.basal_units


@dataclass(frozen=True)
class DailyDose:
    """Mean insulin per day over the days whose basal is known: bolus, basal, their total, and basal's
    share of it (0..1)."""

    days: int
    bolus_units: float
    basal_units: float
    total_units: float
    basal_share: float


def daily_dose(days: tuple[DayTreatments, ...]) -> DailyDose | None:
    """The mean daily dose of the `days` with a known basal; None when there is none (no profile)."""
    known = [d for d in days if d.basal_units is not None]
    if not known:
        return None
    bolus = sum(d.insulin_units for d in known) / len(known)
    basal = sum(d.basal_units or 0.0 for d in known) / len(known)
    total = bolus + basal
    return DailyDose(len(known), bolus, basal, total, basal / total if total > 0 else 0.0)


def automatic_share(days: tuple[DayTreatments, ...]) -> tuple[float, float] | None:
    """The bolus insulin of `days` and the share of it the loop gave by itself (0..1); None when
    there is no insulin or none of it was automatic (no closed loop uploads here)."""
    total = sum(d.insulin_units for d in days)
    automatic = sum(d.automatic_units for d in days)
    if total <= 0 or automatic <= 0:
        return None
    return total, automatic / total


@dataclass(frozen=True)
class BolusOutcome:
    """What the glucose did in the hours after one bolus (marts.mrt_medication_effectiveness)."""

    treatment_id: str
    at: datetime
    """Local time of the bolus."""
    event_type: str
    insulin_units: float | None
    carbs_g: float | None
    glucose_before: float | None
    glucose_after: float | None
    reduction: float | None
    minutes_to_min: float | None
    min_after: float | None
    hypo_within_4h: bool


def load_daily_treatments(
    lake: LakeReader, branch: str, since: date, until: date
) -> tuple[DayTreatments, ...]:
    """Insulin and carb totals per local day, oldest first; none when the table does not exist."""
    if not lake.has_table(DAILY_TREATMENTS):
        return ()
    # A home built by an older release has no basal column until its next run rebuilds the table.
    stored = lake.query("select * from gold.fct_daily_treatment_totals limit 0", branch).columns
    basal = "basal_insulin_units" if "basal_insulin_units" in stored else "null::double"
    rows = lake.query(
        "select reading_date, total_insulin_units, total_carbs_g, bolus_count, carb_entry_count, "
        f"automatic_insulin_units, {basal} "
        "from gold.fct_daily_treatment_totals where reading_date between $since and $until "
        "order by reading_date",
        branch,
        params={"since": since, "until": until},
    ).rows
    return tuple(
        DayTreatments(
            day,
            optional_float(units) or 0.0,
            optional_float(carbs) or 0.0,
            int(boluses or 0),
            int(entries or 0),
            optional_float(automatic) or 0.0,
            optional_float(basal),
        )
        for day, units, carbs, boluses, entries, automatic, basal in rows
    )


def load_bolus_outcomes(
    lake: LakeReader, branch: str, since: date, until: date, limit: int = 500
) -> tuple[BolusOutcome, ...]:
    """The boluses of local days `since`..`until`, newest first, with what followed each."""
    if not lake.has_table(EFFECTIVENESS):
        return ()
    records = lake.query(
        "select * from marts.mrt_medication_effectiveness where reading_date between $since and $until "
        "order by bolus_local_ts desc limit $limit",
        branch,
        params={"since": since, "until": until, "limit": limit},
    ).records()
    return tuple(
        BolusOutcome(
            treatment_id=str(r["treatment_id"]),
            at=r["bolus_local_ts"],
            event_type=str(r["event_type"] or ""),
            insulin_units=optional_float(r["insulin_units"]),
            carbs_g=optional_float(r["carbs_g"]),
            glucose_before=optional_float(r["glucose_before"]),
            glucose_after=optional_float(r["glucose_after"]),
            reduction=optional_float(r["glucose_reduction"]),
            minutes_to_min=optional_float(r["minutes_to_min_after"]),
            min_after=optional_float(r["min_glucose_after"]),
            hypo_within_4h=bool(r["hypo_within_4h"]),
        )
        for r in records
    )


def optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
