"""The figures of the clinic report, read from the lake as `metrics` and the dashboard read them.

Period figures (bands, mean, SD, CV, GMI, GRI, CGM active) are computed over the period's readings in
silver.fct_glucose_readings, never as averages of daily values; hypoglycaemia episodes are the daily
table's counts (`metrics`' rows: an episode counts on the day it starts); treatments are the Charts
page's reads (engine.api.treatment_reads). Imports nothing heavy: the command line's light read uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from engine.api.sufficiency import MIN_COVERAGE_PCT, MIN_DAYS, Sufficiency
from engine.api.treatment_reads import BolusOutcome, DayTreatments, load_bolus_outcomes, load_daily_treatments
from engine.config import Settings
from engine.errors import PhloError
from engine.outputs.report.period import Period

if TYPE_CHECKING:
    from engine.lake.views import QueryResult

READINGS = "silver.fct_glucose_readings"
PROFILE_DAYS = 14
"""Daily profiles drawn: the last 14 days of a longer period (one small panel each)."""
AGP_SLOT_MINUTES = 15
AGP_WINDOW_MINUTES = 60
"""The AGP's percentiles are taken every 15 minutes over the readings within ±30 minutes of that time
of day, on all days of the period (the window wraps around midnight): its only smoothing."""
MAX_BOLUSES = 100_000


class ReportReader(Protocol):
    """What the report reads through: the Engine, or the command line's FastReader."""

    def has_table(self, name: str) -> bool: ...

    def query(self, sql: str, branch: str = ..., params: dict[str, Any] | None = ...) -> QueryResult: ...

    def metrics(
        self,
        *,
        since: str | None = ...,
        until: str | None = ...,
        days: int | None = ...,
        branch: str = ...,
    ) -> QueryResult: ...


def sufficient_data(days: int, cgm_active_pct: float) -> bool:
    """Whether a period's figures can be read as representative: the rule of engine.api.sufficiency (at
    least MIN_DAYS days with at least MIN_COVERAGE_PCT % of the possible readings, the 2019 consensus)."""
    return days >= MIN_DAYS and cgm_active_pct >= MIN_COVERAGE_PCT


@dataclass(frozen=True)
class PeriodStats:
    """The period's readings by consensus band (% of readings), with mean and sample SD in mg/dL."""

    readings: int
    expected_readings: float
    mean_mg_dl: float
    sd_mg_dl: float | None
    very_low_pct: float
    low_pct: float
    in_range_pct: float
    high_pct: float
    very_high_pct: float
    days_with_readings: int
    last_reading: datetime
    """Local time of the period's newest reading ("data through")."""
    gmi_pct: float
    cv_pct: float | None
    gri: float
    """GMI, CV and the Glycemia Risk Index as sql/macros/glucose_metrics.sql computes them."""

    @property
    def cgm_active_pct(self) -> float:
        return Sufficiency(self.readings, self.expected_readings, days=0).coverage_pct

    @property
    def gri_zone(self) -> str:
        return gri_zone(self.gri)

    @property
    def below_range_pct(self) -> float:
        return self.very_low_pct + self.low_pct

    @property
    def above_range_pct(self) -> float:
        return self.high_pct + self.very_high_pct


def gri_zone(gri: float) -> str:
    """The GRI zone: A (0–20, lowest risk) to E (over 80), each a fifth of the scale."""
    for zone, upper in (("A", 20.0), ("B", 40.0), ("C", 60.0), ("D", 80.0)):
        if gri <= upper:
            return zone
    return "E"


@dataclass(frozen=True)
class AgpSlot:
    """Percentiles of glucose (mg/dL) around one time of day, `minute` after midnight."""

    minute: int
    readings: int
    p05: float
    p25: float
    p50: float
    p75: float
    p95: float


@dataclass(frozen=True)
class DayProfile:
    """One local day's readings: minutes after midnight and mg/dL, in time order."""

    day: date
    minutes: tuple[float, ...]
    mg_dl: tuple[int, ...]


@dataclass(frozen=True)
class ReportData:
    period: Period
    branch: str
    timezone: str
    stats: PeriodStats
    hypo_episodes_l1: int
    hypo_episodes_l2: int
    agp: tuple[AgpSlot, ...]
    profiles: tuple[DayProfile, ...]
    treatments: tuple[DayTreatments, ...] = ()
    boluses: tuple[BolusOutcome, ...] = ()

    @property
    def sufficient(self) -> bool:
        return sufficient_data(self.period.days, self.stats.cgm_active_pct)

    @property
    def has_treatments(self) -> bool:
        return any(t.boluses or t.carb_entries for t in self.treatments) or bool(self.boluses)


_STATS_SQL = """
with readings as (
    select cast(glucose_mg_dl as double) as gl, reading_date, reading_local_ts
    from silver.fct_glucose_readings
    where reading_date between $since and $until
)
select
    count(*) as readings,
    avg(gl) as mean_mg_dl,
    stddev_samp(gl) as sd_mg_dl,
    100.0 * count_if(gl < 54) / count(*) as very_low_pct,
    100.0 * count_if(gl >= 54 and gl < 70) / count(*) as low_pct,
    100.0 * count_if(gl >= 70 and gl <= 180) / count(*) as in_range_pct,
    100.0 * count_if(gl > 180 and gl <= 250) / count(*) as high_pct,
    100.0 * count_if(gl > 250) / count(*) as very_high_pct,
    count(distinct reading_date) as days_with_readings,
    max(reading_local_ts) as last_reading
from readings
"""

_FIGURES_SQL = f"""
select *,
    gmi_pct(mean_mg_dl) as gmi_pct,
    cv_pct(sd_mg_dl, mean_mg_dl) as cv_pct,
    gri(very_low_pct, low_pct, high_pct, very_high_pct) as gri
from ({_STATS_SQL})
"""

_AGP_SQL = """
with readings as (
    select cast(glucose_mg_dl as double) as gl,
        hour(reading_local_ts) * 60 + minute(reading_local_ts) + second(reading_local_ts) / 60.0 as tod
    from silver.fct_glucose_readings
    where reading_date between $since and $until
),
slots as (
    select cast(range * $slot as integer) as minute from range(cast(1440 / $slot as integer))
)
select
    s.minute,
    count(*) as readings,
    quantile_cont(r.gl, [0.05, 0.25, 0.5, 0.75, 0.95]) as percentiles
from slots as s
inner join readings as r
    on (r.tod - s.minute + 1440 + $half) % 1440 < 2 * $half
group by s.minute
order by s.minute
"""

_PROFILES_SQL = """
select
    reading_date,
    list(hour(reading_local_ts) * 60 + minute(reading_local_ts) + second(reading_local_ts) / 60.0
        order by reading_local_ts) as minutes,
    list(glucose_mg_dl order by reading_local_ts) as mg_dl
from silver.fct_glucose_readings
where reading_date between $since and $until
group by reading_date
order by reading_date
"""


def load_report(
    reader: ReportReader, settings: Settings, period: Period, branch: str, now: datetime
) -> ReportData:
    """Every figure of the report for `period` on `branch`. Raises PhloError when the period has no
    readings (or the lake no readings table yet)."""
    if not reader.has_table(READINGS):
        raise PhloError("no readings in the lake yet", "run `phlo-tui run` (or `backfill`) first")
    params: dict[str, Any] = {"since": period.since, "until": period.until}
    row = reader.query(_FIGURES_SQL, branch, params=params).records()[0]
    if not row["readings"]:
        raise PhloError(
            f"no readings from {period.since} to {period.until} on {branch}",
            f"choose another period, or fetch it: `phlo-tui backfill --since {period.since}`",
        )
    stats = PeriodStats(
        readings=int(row["readings"]),
        expected_readings=period.expected_readings(settings.zone, now),
        mean_mg_dl=float(row["mean_mg_dl"]),
        sd_mg_dl=None if row["sd_mg_dl"] is None else float(row["sd_mg_dl"]),
        very_low_pct=float(row["very_low_pct"]),
        low_pct=float(row["low_pct"]),
        in_range_pct=float(row["in_range_pct"]),
        high_pct=float(row["high_pct"]),
        very_high_pct=float(row["very_high_pct"]),
        days_with_readings=int(row["days_with_readings"]),
        last_reading=row["last_reading"],
        gmi_pct=float(row["gmi_pct"]),
        cv_pct=None if row["cv_pct"] is None else float(row["cv_pct"]),
        gri=float(row["gri"]),
    )
    daily = reader.metrics(since=period.since.isoformat(), until=period.until.isoformat(), branch=branch)
    episodes = daily.records()
    agp = reader.query(
        _AGP_SQL, branch, params={**params, "slot": AGP_SLOT_MINUTES, "half": AGP_WINDOW_MINUTES // 2}
    ).rows
    profile_since = max(period.since, period.until - timedelta(days=PROFILE_DAYS - 1))
    profiles = reader.query(_PROFILES_SQL, branch, params={**params, "since": profile_since}).rows
    return ReportData(
        period=period,
        branch=branch,
        timezone=settings.timezone,
        stats=stats,
        hypo_episodes_l1=sum(int(d["hypo_episodes_l1"]) for d in episodes),
        hypo_episodes_l2=sum(int(d["hypo_episodes_l2"]) for d in episodes),
        agp=tuple(AgpSlot(int(m), int(n), *(float(p) for p in q)) for m, n, q in agp),
        profiles=tuple(DayProfile(day, tuple(minutes), tuple(values)) for day, minutes, values in profiles),
        treatments=load_daily_treatments(reader, branch, period.since, period.until),
        boluses=load_bolus_outcomes(reader, branch, period.since, period.until, limit=MAX_BOLUSES),
    )
