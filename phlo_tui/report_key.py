"""The dashboard's `e`: which period the page on screen shows, and the message its export posts."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from textual.message import Message
from textual.screen import Screen

from engine.api.commands import ReportResult
from engine.api.sufficiency import MIN_DAYS
from phlo_tui.screens.charts import ChartsScreen
from phlo_tui.screens.overview import OverviewScreen


class ReportExported(Message):
    def __init__(self, result: ReportResult) -> None:
        super().__init__()
        self.result = result


def period_on_screen(screen: Screen[object], now: datetime, zone: ZoneInfo) -> tuple[date, date, str]:
    """(since, until, branch): the Charts page's window (14, 30 or 90 days, and the branch it read), the
    Overview's 14 days, or on the other pages the last 14 days; each ends today."""
    if isinstance(screen, ChartsScreen) and screen.snapshot is not None:
        return screen.snapshot.since, screen.snapshot.until, screen.snapshot.branch or "main"
    today = now.astimezone(zone).date()
    days, branch = MIN_DAYS, "main"
    if isinstance(screen, OverviewScreen) and screen.snapshot is not None:
        days, branch = screen.snapshot.window_days, screen.snapshot.branch or "main"
    elif isinstance(screen, ChartsScreen):
        days = screen.days
    return today - timedelta(days=days - 1), today, branch
