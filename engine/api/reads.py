"""What the read-only commands answer, built the same way by the Engine and by the command line's light
read (engine.api.fastread): one builder per answer, so the two cannot drift apart.

Imports nothing heavy (no pyiceberg, sqlglot, pyarrow or psycopg): the light read imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.api.arguments import check_period
from engine.api.sufficiency import assess, assess_day
from engine.clock import wall_clock
from engine.config import Settings
from engine.errors import PhloError
from engine.outputs.backup import backup_state
from engine.runs.lease import live_daemon
from engine.runs.records import ENTRIES_WATERMARK, LeaseRecord, PromotionRecord, RunRecord
from engine.runs.store import RunStore
from engine.transform.freshness import Freshness, freshness
from engine.transform.model_files import model_files

if TYPE_CHECKING:
    from engine.lake.views import QueryResult

BRANCHES = ("dev", "main")
RAW_TABLE_NAMES = (
    "raw.glucose_entries",
    "raw.glucose_quarantine",
    "raw.treatments",
    "raw.treatments_quarantine",
    "raw.import_records",
    "raw.profiles",
)
"""The names of engine.ingest.tables.RAW_TABLES (a test keeps them equal), without importing pyiceberg."""
DAILY_METRICS = "gold.fct_daily_glucose_metrics"


def lake_table_names() -> list[str]:
    """Every lake table, as `status` lists them: the raw tables, then the models layer by layer, by name."""
    return list(RAW_TABLE_NAMES) + [f"{path.parent.name}.{path.stem}" for path in model_files()]


def home_freshness(settings: Settings, store: RunStore, now: datetime) -> Freshness:
    """How old the newest stored reading is at `now` (data time, engine.clock), with the home's warning
    threshold (engine.transform.freshness)."""
    warning = timedelta(minutes=settings.freshness_warning_minutes)
    return freshness(store.watermark(ENTRIES_WATERMARK), now, warning)


@dataclass(frozen=True)
class HomeStatus:
    """A picture of the home, read in one go (Engine.status and FastReader.status): settings without
    secrets, the writer and daemon, table heads, the gate, freshness, backup, publish target, runs."""

    home: str
    demo: bool
    settings: Mapping[str, Any]
    """The settings as `Settings.public()` gives them: every secret only as "set"."""
    watermark_ms: int | None
    writer: LeaseRecord | None
    daemon: LeaseRecord | None
    tables: Mapping[str, Mapping[str, int | None]]
    """Each existing lake table with its dev and main snapshot ids."""
    last_promotion: PromotionRecord | None
    gate_errors: tuple[str, ...]
    freshness: Freshness
    backup: Mapping[str, Any] | None
    publish_target: Mapping[str, Any]
    pending_months: tuple[str, ...]
    runs: tuple[RunRecord, ...]

    def to_json(self) -> dict[str, Any]:
        """What `status --json` prints."""
        return {
            "home": self.home,
            "demo": self.demo,
            "settings": dict(self.settings),
            "watermark_ms": self.watermark_ms,
            "writer": self.writer.to_json() if self.writer else None,
            "daemon": self.daemon.to_json() if self.daemon else None,
            "tables": {name: dict(heads) for name, heads in self.tables.items()},
            "last_promotion": self.last_promotion.to_json() if self.last_promotion else None,
            "gate_errors": list(self.gate_errors),
            "freshness": self.freshness.to_json(),
            "backup": dict(self.backup) if self.backup is not None else None,
            "publish_target": dict(self.publish_target),
            "pending_months": list(self.pending_months),
            "runs": [r.to_json() for r in self.runs],
        }


def home_status(
    settings: Settings,
    store: RunStore,
    tables: dict[str, dict[str, int | None]],
    publish_target: dict[str, Any],
    now: datetime,
) -> HomeStatus:
    """The home's status: `tables` are the existing ones with their dev and main snapshot ids, freshness
    is at `now` (data time)."""
    return HomeStatus(
        home=str(settings.home),
        demo=settings.demo,
        settings=settings.public(),
        watermark_ms=store.watermark(ENTRIES_WATERMARK),
        writer=store.lease(),
        daemon=live_daemon(store),
        tables=tables,
        last_promotion=store.last_promotion(),
        gate_errors=tuple(store.standing_gate_errors()),
        freshness=home_freshness(settings, store, now),
        backup=backup_state(settings, wall_clock()),  # a backup's age is process time
        publish_target=publish_target,
        pending_months=tuple(sorted(store.pending_months())),
        runs=tuple(store.list_runs(20)),
    )


def metrics_query(
    settings: Settings, since: str | None, until: str | None, days: int | None, now: datetime
) -> tuple[str, dict[str, Any]]:
    """The query of `metrics` and its parameters: `since`..`until` (YYYY-MM-DD), or the last `days`
    (default 14) local days ending today at `now` (data time). Raises PhloError for bad dates."""
    # As YYYY-MM-DD: Python takes other ISO forms (20260131) that DuckDB's cast to date refuses.
    since, until = check_period(since, until, days)
    if since is None:
        since = _first_day(now.astimezone(settings.zone).date(), days)
    sql = (
        f"select * exclude (reading_month) from {DAILY_METRICS} "
        "where reading_date >= $since::date and ($until::varchar is null or reading_date <= $until::date) "
        "order by reading_date"
    )
    return sql, {"since": since, "until": until}


def _first_day(today: date, days: int | None) -> str:
    try:
        return (today - timedelta(days=(days or 14) - 1)).isoformat()
    except OverflowError as e:
        raise PhloError(f"--days {days} reaches outside the calendar", "use fewer days, or --since") from e


def metrics_answer(
    settings: Settings,
    result: QueryResult,
    since: str | None,
    until: str | None,
    days: int | None,
    now: datetime,
) -> dict[str, Any]:
    """What `metrics --json` prints for the rows of `metrics_query(settings, since, until, days)`:
    {"period": …, "days": […]}. Each day carries `sufficient_data` (engine.api.sufficiency), and today's
    `coverage_pct` and `expected_reading_count` are measured against the time elapsed so far; the period
    (`since`..`until`, or the last `days` local days, up to today) carries its readings, coverage, days
    and `sufficient_data`."""
    zone = settings.zone
    today = now.astimezone(zone).date()
    since, until = check_period(since, until, days)
    first = date.fromisoformat(since or _first_day(today, days))
    last = min(date.fromisoformat(until), today) if until else today
    rows = []
    for row in result.records():
        day = assess_day(int(row["reading_count"]), row["reading_date"], zone, now)
        if row["reading_date"] == today:
            row["expected_reading_count"] = int(day.expected)
            row["coverage_pct"] = day.coverage_pct
        rows.append({**row, "sufficient_data": day.sufficient})
    readings = sum(int(row["reading_count"]) for row in rows)
    period = assess(readings, first, last, zone, now)
    return {
        "period": {
            "since": first.isoformat(),
            "until": last.isoformat(),
            **period.to_json(),
            "message": None if period.sufficient else period.message(),
        },
        "days": rows,
    }
