"""What each screen shows, read from the engine facade into frozen snapshots; workers call these, renderers read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.daemon import Freshness, freshness
from engine.diff import TableDiff
from engine.errors import PromotionError
from engine.facade import Engine
from engine.runstore import CheckRecord, LeaseRecord, PromotionRecord, RunRecord, RunStatus

READINGS = "silver.fct_glucose_readings"
DAILY = "gold.fct_daily_glucose_metrics"
PROFILE = "gold.fct_hourly_glucose_profile"
PATTERNS = "marts.mrt_glucose_hourly_patterns"
QUARANTINE = "raw.glucose_quarantine"
GMI_MIN_DAYS = 14
GMI_MIN_COVERAGE = 70.0
LOG_TAIL_BYTES = 256_000


@dataclass(frozen=True)
class PipelineStatus:
    """The run store and the writer, polled every few seconds."""

    now: datetime
    runs: tuple[RunRecord, ...]
    gate_errors: tuple[str, ...]
    daemon: LeaseRecord | None
    freshness: Freshness
    last_promotion: PromotionRecord | None
    next_run: datetime | None
    planned_steps: int

    @property
    def latest(self) -> RunRecord | None:
        return self.runs[0] if self.runs else None

    @property
    def active(self) -> RunRecord | None:
        return next((r for r in self.runs if r.status in RunStatus.ACTIVE), None)

    @property
    def data_version(self) -> tuple[object, ...]:
        """Changes when the lake may have changed: a run finished, a promotion happened."""
        finished = next((r for r in self.runs if r.status in RunStatus.FINISHED), None)
        return (
            finished.id if finished else None,
            self.last_promotion.id if self.last_promotion else None,
            self.gate_errors,
        )

    @property
    def runs_version(self) -> tuple[object, ...]:
        return tuple(
            (r.id, r.status, len(r.steps), r.steps[-1].status if r.steps else None) for r in self.runs
        )


def load_status(engine: Engine, now: datetime, next_run: datetime | None) -> PipelineStatus:
    status = engine.status()
    daemon = engine.daemon()
    warning = timedelta(minutes=engine.settings.freshness_warning_minutes)
    # The engine's freshness reads the wall clock; the app's clock is injectable (snapshot tests).
    fresh = freshness(status["watermark_ms"], now, warning)
    # Steps of a run besides ingest (three per fetch window): one per model, the gates, the promotion.
    planned = len(engine.models()) + 1 + (1 if engine.settings.auto_promote else 0)
    return PipelineStatus(
        now=now,
        runs=tuple(engine.list_runs(20)),
        gate_errors=tuple(status["gate_errors"]),
        daemon=daemon,
        freshness=fresh,
        last_promotion=engine.last_promotion(),
        next_run=daemon.next_run_at if daemon is not None else next_run,
        planned_steps=planned,
    )


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

    def share(self, key: str) -> float:
        return float(getattr(self, key))

    @property
    def cv_pct(self) -> float | None:
        if self.mean_mg_dl is None or self.sd_mg_dl is None or self.mean_mg_dl == 0:
            return None
        return 100.0 * self.sd_mg_dl / self.mean_mg_dl

    @property
    def gmi_pct(self) -> float | None:
        return None if self.mean_mg_dl is None else 3.31 + 0.02392 * self.mean_mg_dl

    @property
    def gri(self) -> float:
        return min(100.0, 3.0 * self.very_low + 2.4 * self.low + 1.6 * self.very_high + 0.8 * self.high)


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
    coverage_pct: float | None = None
    window_days: int = GMI_MIN_DAYS

    @property
    def gmi_flagged(self) -> bool:
        """GMI needs 14 days with 70 % of the expected readings (GLUCOSE.md)."""
        if self.window is None or self.coverage_pct is None:
            return True
        return self.window.days < GMI_MIN_DAYS or self.coverage_pct < GMI_MIN_COVERAGE


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
)
select
    (select reading_ts from latest) as latest_ts,
    (select gl from latest) as latest_gl,
    (select direction from latest) as latest_direction,
    (select list(struct_pack(ts := reading_ts, gl := gl) order by reading_ts)
        from readings where epoch_ms(reading_ts) >= $trace_ms) as trace,
    (select list(bands) from bands) as bands
"""


def existing_tables(engine: Engine) -> dict[str, dict[str, int | None]]:
    """Lake tables that exist, with their dev and main snapshot ids."""
    tables: dict[str, dict[str, int | None]] = engine.status()["tables"]
    return tables


def load_overview(engine: Engine, now: datetime) -> OverviewSnapshot:
    """The newest reading, the last 24 h and the band shares of today and the last 14 local days."""
    tz = engine.settings.timezone
    if READINGS not in existing_tables(engine):
        return OverviewSnapshot(now, tz, None)
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    window_start = today - timedelta(days=GMI_MIN_DAYS - 1)
    params = {
        "now_ms": int(now.timestamp() * 1000),
        "trace_ms": int((now - timedelta(hours=24)).timestamp() * 1000),
        "today": today,
        "window_start": window_start,
    }
    for branch in ("main", "dev"):
        row = engine.query(_OVERVIEW_SQL, branch, params=params).records()[0]
        if row["latest_ts"] is not None:
            break
    else:
        return OverviewSnapshot(now, tz, None)
    bands = {b["period"]: _shares(b) for b in row["bands"] or []}
    window = bands.get("window")
    start = datetime.combine(window_start, time(0), zone)
    expected = (now - start).total_seconds() / 300
    coverage = None if window is None or expected <= 0 else min(100.0, 100.0 * window.readings / expected)
    return OverviewSnapshot(
        now=now,
        timezone=tz,
        branch=branch,
        latest=Reading(row["latest_ts"], int(row["latest_gl"]), row["latest_direction"]),
        trace=tuple((p["ts"], int(p["gl"])) for p in row["trace"] or []),
        today=bands.get("today"),
        window=window,
        coverage_pct=coverage,
    )


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
    )


@dataclass(frozen=True)
class RunsSnapshot:
    runs: tuple[RunRecord, ...]
    selected: str | None
    log_lines: tuple[str, ...]
    log_path: Path


def load_runs(engine: Engine, selected: str | None, log_lines: int = 40) -> RunsSnapshot:
    """The newest runs with their steps, and the log lines of the selected run (the newest by default)."""
    runs = tuple(engine.list_runs(50))
    if selected is None or all(r.id != selected for r in runs):
        selected = runs[0].id if runs else None
    path = engine.settings.logs_dir / "phlo-tui.log"
    lines = tail_run_log(path, selected, log_lines) if selected else ()
    return RunsSnapshot(runs, selected, lines, path)


def tail_run_log(path: Path, run_id: str, count: int) -> tuple[str, ...]:
    """The last `count` lines of the log stamped `run=<run_id>`; none when there is no log file."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    marker = f"run={run_id}"
    return tuple([line for line in text.splitlines() if marker in line][-count:])


@dataclass(frozen=True)
class BranchesSnapshot:
    diffs: tuple[TableDiff, ...]
    gate_errors: tuple[str, ...]
    last_promotion: PromotionRecord | None
    diff_error: str | None = None

    @property
    def changed(self) -> tuple[TableDiff, ...]:
        return tuple(d for d in self.diffs if d.changed)


def load_branches(engine: Engine) -> BranchesSnapshot:
    """dev against main per table, and whether the last gate on dev lets a promotion through."""
    gate_errors = tuple(engine.status()["gate_errors"])
    try:
        diffs, error = tuple(engine.diff()), None
    except PromotionError as e:
        # Diverged branches are a state to show on the screen, not a failure of the screen.
        diffs, error = (), str(e)
    return BranchesSnapshot(diffs, gate_errors, engine.last_promotion(), error)


@dataclass(frozen=True)
class QuarantinedRow:
    entry_id: str
    check: str
    reason: str
    payload: str
    quarantined_at: datetime | None


@dataclass(frozen=True)
class QualitySnapshot:
    checks: tuple[CheckRecord, ...]
    run_started: dict[str, datetime]
    quarantine: tuple[QuarantinedRow, ...]


def load_quality(engine: Engine) -> QualitySnapshot:
    """Failed checks of the recent runs and the newest quarantined raw rows (on dev, where runs write)."""
    checks = tuple(engine.quality())
    started = {r.id: r.started_at for r in engine.list_runs(50)}
    rows: Sequence[dict[str, Any]] = ()
    if QUARANTINE in existing_tables(engine):
        rows = engine.query(
            'select entry_id, "check", reason, payload, quarantined_at from raw.glucose_quarantine '
            "order by quarantined_at desc limit 200",
            "dev",
        ).records()
    quarantine = tuple(
        QuarantinedRow(
            str(r["entry_id"]), str(r["check"]), str(r["reason"]), str(r["payload"]), r["quarantined_at"]
        )
        for r in rows
    )
    return QualitySnapshot(checks, started, quarantine)


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
    return ChartsSnapshot(
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
