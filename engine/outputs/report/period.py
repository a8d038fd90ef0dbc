"""The period a report covers: whole local days, from the command line's options or the dashboard's window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.errors import PhloError

DEFAULT_DAYS = 14
MAX_DAYS = 3650
READING_INTERVAL_S = 300
"""The sensor's nominal interval: a day of 24 h expects 288 readings (docs/metrics.md, coverage)."""


@dataclass(frozen=True)
class Period:
    """Local days `since`..`until`, both included."""

    since: date
    until: date

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def dates(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range(self.days)]

    def label(self) -> str:
        """'10 Mar 2025 – 23 Mar 2025 (14 days)'."""
        days = f"{self.days} day{'s' if self.days != 1 else ''}"
        return f"{self.since:%d %b %Y} – {self.until:%d %b %Y} ({days})"

    def expected_readings(self, zone: ZoneInfo, now: datetime) -> float:
        """Readings a sensor would give at 5 minutes over the period's real length (23 or 25 h on
        daylight-saving days), up to `now` when the period reaches today."""
        start = _local_midnight(self.since, zone)
        end = min(_local_midnight(self.until + timedelta(days=1), zone), now.astimezone(UTC))
        return max((end - start).total_seconds(), 0.0) / READING_INTERVAL_S


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    # In UTC: subtracting two datetimes of the same zone would ignore a daylight-saving change.
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def resolve_period(
    zone: ZoneInfo,
    now: datetime,
    *,
    days: int | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Period:
    """The report's period: `since`..`until` (YYYY-MM-DD); `until` alone ends the default number of days
    there; `since` alone runs through the last full local day (today, when it starts today); `days`
    alone, or nothing, is the last `days` (14) full local days, ending yesterday.

    Raises PhloError for a bad date, a mix of `days` and dates, a period that ends before it starts,
    or one that reaches past today."""
    today = now.astimezone(zone).date()
    if days is not None and (since is not None or until is not None):
        raise PhloError("--days cannot be combined with --since or --until", "use one or the other")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise PhloError(f"--days {days} is outside 1..{MAX_DAYS}", "use a number of days such as 14 or 90")
    first = _date(since, "--since")
    last = _date(until, "--until")
    if first is None and last is None:
        last = today - timedelta(days=1)
        first = last - timedelta(days=(days or DEFAULT_DAYS) - 1)
    elif first is None:
        assert last is not None
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    elif last is None:
        last = max(first, today - timedelta(days=1))
    if first > today:
        raise PhloError(
            f"the period starts on {first}, in the future (today is {today} in {zone.key})",
            "choose days up to today",
        )
    if last > today:
        raise PhloError(
            f"the period ends on {last}, in the future (today is {today} in {zone.key})",
            f"end it on {today} or earlier",
        )
    if last < first:
        raise PhloError(f"the period ends ({last}) before it starts ({first})", "swap --since and --until")
    if (last - first).days + 1 > MAX_DAYS:
        raise PhloError(f"the period is longer than {MAX_DAYS} days", "choose a shorter period")
    return Period(first, last)


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise PhloError(f"{option}: bad date {text!r}", "use YYYY-MM-DD, for example 2026-01-31") from e
