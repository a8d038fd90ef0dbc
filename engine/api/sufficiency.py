"""Whether a period holds enough CGM data for its figures to be read as representative: the one place
the rule lives (the command line's `metrics`, the dashboard and reports ask here).

The 2019 international consensus on CGM metrics (docs/metrics.md, "Enough data") reads a period's
figures (the bands, GMI, CV) as representative only over at least MIN_DAYS days with at least
MIN_COVERAGE_PCT % of the readings a sensor sends, one every READING_INTERVAL_S. A period is a run of
local calendar days; its time is measured in real seconds (a daylight-saving day has 23 or 25 hours)
and ends at `now` when the period reaches it, so today's coverage is measured against the time elapsed.
Figures on less data may be shown, but beside `Sufficiency.message()`.

Imports nothing heavy: the command line's light read uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

MIN_DAYS = 14
"""Days a period must span."""
MIN_COVERAGE_PCT = 70.0
"""Share of the expected readings a period (or a day) must hold, in %."""
READING_INTERVAL_S = 300
"""A CGM sends one reading every 5 minutes: what `expected` counts."""


@dataclass(frozen=True)
class Sufficiency:
    """A period's readings against what a sensor would have sent over its time so far."""

    readings: int
    expected: float
    """Readings a sensor sends over the period's time (up to now), at one per READING_INTERVAL_S."""
    days: int
    """Local calendar days the period spans (today included, even though it has not ended)."""
    min_days: int = MIN_DAYS

    @property
    def coverage_pct(self) -> float:
        """Readings as a % of `expected`, capped at 100 (a period not yet begun has 0)."""
        if self.expected <= 0:
            return 0.0
        return min(100.0, 100.0 * self.readings / self.expected)

    @property
    def sufficient(self) -> bool:
        return self.days >= self.min_days and self.coverage_pct >= MIN_COVERAGE_PCT

    def message(self) -> str:
        """What to say instead of (or beside) the figures when they are not representative."""
        text = f"not enough data: {self.readings} readings, {self.coverage_pct:.0f} % of the period"
        if self.days < self.min_days:
            text += f" ({self.days} of {self.min_days} days)"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "expected_readings": round(self.expected, 1),
            "coverage_pct": self.coverage_pct,
            "days": self.days,
            "sufficient_data": self.sufficient,
        }


def period_time(first_day: date, last_day: date, zone: ZoneInfo, now: datetime) -> timedelta:
    """The real time from the start of local day `first_day` to the end of `last_day` or to `now`,
    whichever comes first (never negative)."""
    start = datetime.combine(first_day, time(0), zone).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return max(timedelta(0), min(end, now.astimezone(UTC)) - start)


def assess(
    readings: int, first_day: date, last_day: date, zone: ZoneInfo, now: datetime, *, min_days: int = MIN_DAYS
) -> Sufficiency:
    """Whether `readings` over local days `first_day`..`last_day` are enough (MIN_DAYS, MIN_COVERAGE_PCT)."""
    expected = period_time(first_day, last_day, zone, now).total_seconds() / READING_INTERVAL_S
    return Sufficiency(readings, expected, max(0, (last_day - first_day).days + 1), min_days)


def assess_day(readings: int, day: date, zone: ZoneInfo, now: datetime) -> Sufficiency:
    """One local day: enough when it holds MIN_COVERAGE_PCT of its readings (today: of its time so far)."""
    return assess(readings, day, day, zone, now, min_days=1)
