"""The Charts page's data: daily metrics, the AGP, the hourly pattern and the treatments of a window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from engine.api.pages.status import existing_tables
from engine.api.pages.treatments import (
    BolusOutcome,
    DayTreatments,
    load_bolus_outcomes,
    load_daily_treatments,
)
from engine.api.sufficiency import Sufficiency, assess

if TYPE_CHECKING:
    from engine.api.facade import Engine

DAILY = "gold.fct_daily_glucose_metrics"
PROFILE = "gold.fct_hourly_glucose_profile"
PATTERNS = "marts.mrt_glucose_hourly_patterns"


@dataclass(frozen=True)
class DayMetrics:
    day: date
    readings: int
    shares: dict[str, float]
    mean_mg_dl: float
    gmi_pct: float
    coverage_pct: float


@dataclass(frozen=True)
class HourProfile:
    hour: int
    readings: int
    p05: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p95: float | None
    mean_mg_dl: float | None = None


@dataclass(frozen=True)
class ChartsSnapshot:
    days: int
    since: date
    until: date
    branch: str | None
    daily: tuple[DayMetrics, ...] = ()
    agp: tuple[HourProfile, ...] = ()
    hourly: tuple[HourProfile, ...] = ()
    treatments: tuple[DayTreatments, ...] = ()
    boluses: tuple[BolusOutcome, ...] = ()
    data: Sufficiency | None = None
    """Whether the window's readings are enough for its figures (engine.api.sufficiency)."""

    def note(self) -> str:
        """What the window's figures stand on, when they stand on less than the window: the history
        they have (a 90-day view of 14 days of history) and whether that is enough data."""
        if not self.daily or self.data is None:
            return ""
        parts = []
        first = self.daily[0].day
        if first > self.since:
            parts.append(
                f"history from {first.isoformat()}: {(self.until - first).days + 1} of {self.days} days"
            )
        if not self.data.sufficient:
            parts.append(self.data.message())
        return " · ".join(parts)


_PROFILE_SQL = """
select p.hour_of_day, p.reading_count, p.p05_mg_dl, p.p25_mg_dl, p.p50_mg_dl, p.p75_mg_dl, p.p95_mg_dl,
    h.reading_count as pattern_count, h.avg_glucose_mg_dl as pattern_mean
from gold.fct_hourly_glucose_profile p
left join marts.mrt_glucose_hourly_patterns h using (hour_of_day)
order by p.hour_of_day
"""


def load_charts(engine: Engine, now: datetime, days: int) -> ChartsSnapshot:
    """Daily metrics of the last `days` local days, the 14-day AGP and the 90-day hourly pattern."""
    until = now.astimezone(engine.settings.zone).date()
    since = until - timedelta(days=days - 1)
    tables = existing_tables(engine)
    if DAILY not in tables or PROFILE not in tables or PATTERNS not in tables:
        return ChartsSnapshot(days, since, until, None)
    for branch in ("main", "dev"):
        daily = engine.metrics(since=since.isoformat(), until=until.isoformat(), branch=branch).records()
        profile = engine.query(_PROFILE_SQL, branch).records()
        if daily or any(p["reading_count"] for p in profile):
            break
    else:
        return ChartsSnapshot(days, since, until, None)
    bands = ("very_low", "low", "in_range", "high", "very_high")
    readings = sum(int(d["reading_count"]) for d in daily)
    return ChartsSnapshot(
        data=assess(readings, since, until, engine.settings.zone, now),
        treatments=load_daily_treatments(engine, branch, since, until),
        boluses=load_bolus_outcomes(engine, branch, since, until),
        days=days,
        since=since,
        until=until,
        branch=branch,
        daily=tuple(
            DayMetrics(
                day=d["reading_date"],
                readings=int(d["reading_count"]),
                shares={b: float(d[_DAILY_COLUMNS[b]]) for b in bands},
                mean_mg_dl=float(d["avg_glucose_mg_dl"]),
                gmi_pct=float(d["estimated_a1c_pct"]),
                coverage_pct=float(d["coverage_pct"]),
            )
            for d in daily
        ),
        agp=tuple(
            HourProfile(
                p["hour_of_day"],
                int(p["reading_count"]),
                p["p05_mg_dl"],
                p["p25_mg_dl"],
                p["p50_mg_dl"],
                p["p75_mg_dl"],
                p["p95_mg_dl"],
            )
            for p in profile
        ),
        hourly=tuple(
            HourProfile(
                p["hour_of_day"],
                int(p["pattern_count"] or 0),
                None,
                None,
                None,
                None,
                None,
                p["pattern_mean"],
            )
            for p in profile
        ),
    )


_DAILY_COLUMNS = {
    "very_low": "time_very_low_pct",
    "low": "time_low_pct",
    "in_range": "time_in_range_pct",
    "high": "time_high_pct",
    "very_high": "time_very_high_pct",
}
