"""The Overview page's figures: the newest reading, the last 24 h and the band shares of today and 14 days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.api.pages.status import read_early
from engine.api.pages.treatments import TreatmentMark, load_marks
from engine.api.scan_reads import load_scans
from engine.api.sufficiency import MIN_DAYS, Sufficiency, assess, assess_day

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.lake.views import LakeReader


READINGS = "silver.fct_glucose_readings"


@dataclass(frozen=True)
class Reading:
    ts: datetime
    mg_dl: int
    direction: str | None


@dataclass(frozen=True)
class BandShares:
    """Readings of a period by consensus band, in % of readings, with the mean and sample SD."""

    readings: int
    very_low: float
    low: float
    in_range: float
    high: float
    very_high: float
    mean_mg_dl: float | None
    sd_mg_dl: float | None
    days: int

    gmi_pct: float | None = None
    cv_pct: float | None = None
    gri: float | None = None
    """GMI, CV and GRI as sql/macros/glucose_metrics.sql computes them, with the gold models."""

    def share(self, key: str) -> float:
        return float(getattr(self, key))


@dataclass(frozen=True)
class OverviewSnapshot:
    now: datetime
    timezone: str
    branch: str | None
    """'main', 'dev' when main has no readings yet (before a first promotion), None without data."""
    latest: Reading | None = None
    trace: tuple[tuple[datetime, int], ...] = ()
    today: BandShares | None = None
    window: BandShares | None = None
    today_data: Sufficiency | None = None
    """Whether today's readings are enough (engine.api.sufficiency: 70 % of the time elapsed so far)."""
    window_data: Sufficiency | None = None
    """Whether the last 14 days' readings are enough for their figures (14 days, 70 %)."""
    window_days: int = MIN_DAYS
    treatments: tuple[TreatmentMark, ...] = ()
    """Boluses and carbs of the trace's 24 h."""
    scans: tuple[tuple[datetime, int], ...] = ()
    """Glucose scans of the trace's 24 h (LibreView imports): markers, never readings or in a figure."""

    @property
    def coverage_pct(self) -> float | None:
        return None if self.window_data is None else self.window_data.coverage_pct


_OVERVIEW_SQL = """
with readings as (
    select reading_ts, reading_date, glucose_mg_dl as gl, direction
    from silver.fct_glucose_readings
    where epoch_ms(reading_ts) <= $now_ms
),
latest as (
    select reading_ts, gl, direction from readings order by reading_ts desc limit 1
),
periods as (
    select 'today' as period, * from readings where reading_date = $today
    union all
    select 'window' as period, * from readings where reading_date between $window_start and $today
),
bands as (
    select period, count(*) as n,
        100.0 * count_if(gl < 54) / count(*) as very_low,
        100.0 * count_if(gl >= 54 and gl < 70) / count(*) as low,
        100.0 * count_if(gl >= 70 and gl <= 180) / count(*) as in_range,
        100.0 * count_if(gl > 180 and gl <= 250) / count(*) as high,
        100.0 * count_if(gl > 250) / count(*) as very_high,
        avg(gl) as mean, stddev_samp(gl) as sd, count(distinct reading_date) as days
    from periods group by period
),
figures as (
    select *, gmi_pct(mean) as gmi, cv_pct(sd, mean) as cv, gri(very_low, low, high, very_high) as gri
    from bands
)
select
    (select reading_ts from latest) as latest_ts,
    (select gl from latest) as latest_gl,
    (select direction from latest) as latest_direction,
    (select list(struct_pack(ts := reading_ts, gl := gl) order by reading_ts)
        from readings where epoch_ms(reading_ts) >= $trace_ms) as trace,
    (select list(figures) from figures) as bands
"""


def load_overview(lake: LakeReader, tz: str, now: datetime) -> OverviewSnapshot:
    """The newest reading, the last 24 h and the band shares of today and the last 14 local days, read
    through the engine or, at start-up, the FastReader (the same SQL on the same snapshot's files)."""
    if not lake.has_table(READINGS):
        return OverviewSnapshot(now, tz, None)
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    window_start = today - timedelta(days=MIN_DAYS - 1)
    params = {
        "now_ms": int(now.timestamp() * 1000),
        "trace_ms": int((now - timedelta(hours=24)).timestamp() * 1000),
        "today": today,
        "window_start": window_start,
    }
    for branch in ("main", "dev"):
        row = lake.query(_OVERVIEW_SQL, branch, params=params).records()[0]
        if row["latest_ts"] is not None:
            break
    else:
        return OverviewSnapshot(now, tz, None)
    bands = {b["period"]: _shares(b) for b in row["bands"] or []}
    window, today_shares = bands.get("window"), bands.get("today")
    return OverviewSnapshot(
        now=now,
        timezone=tz,
        branch=branch,
        latest=Reading(row["latest_ts"], int(row["latest_gl"]), row["latest_direction"]),
        trace=tuple((p["ts"], int(p["gl"])) for p in row["trace"] or []),
        today=today_shares,
        window=window,
        today_data=assess_day(today_shares.readings if today_shares else 0, today, zone, now),
        window_data=assess(window.readings if window else 0, window_start, today, zone, now),
        treatments=load_marks(lake, branch, now - timedelta(hours=24), now),
        scans=load_scans(lake, branch, now - timedelta(hours=24), now),
    )


def load_early_overview(settings: Settings, now: datetime) -> OverviewSnapshot | None:
    """The Overview before the engine is imported (engine.api.fastread), or None when the recorded files
    cannot tell what the engine would show: then the engine's read follows."""
    return read_early(settings, "overview", lambda reader: load_overview(reader, settings.timezone, now))


def _shares(row: dict[str, Any]) -> BandShares:
    return BandShares(
        readings=int(row["n"]),
        very_low=float(row["very_low"]),
        low=float(row["low"]),
        in_range=float(row["in_range"]),
        high=float(row["high"]),
        very_high=float(row["very_high"]),
        mean_mg_dl=row["mean"],
        sd_mg_dl=row["sd"],
        days=int(row["days"]),
        gmi_pct=row["gmi"],
        cv_pct=row["cv"],
        gri=float(row["gri"]),
    )
