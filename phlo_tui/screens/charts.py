"""Page 2: daily time in range (14/30/90 days), the AGP, mean and GMI per day, and the hourly pattern."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import ContentSwitcher, Label
from textual.worker import get_current_worker

from engine.api.pages import ChartsSnapshot, load_charts
from phlo_tui.screens.base import PhloScreen
from phlo_tui.widgets.agp_chart import AgpChart
from phlo_tui.widgets.bolus_table import BolusTable
from phlo_tui.widgets.hourly_chart import HourlyChart
from phlo_tui.widgets.tir_chart import TirChart
from phlo_tui.widgets.treatment_chart import TreatmentChart
from phlo_tui.widgets.trend_chart import TrendChart

WINDOWS = (14, 30, 90)
CHARTS = (
    ("tir-chart", "TIR"),
    ("agp-chart", "AGP"),
    ("trend-chart", "mean·GMI"),
    ("hourly-chart", "hourly"),
    ("treatment-chart", "insulin·carbs"),
    ("bolus-table", "boluses"),
)
Chart = TirChart | AgpChart | TrendChart | HourlyChart | TreatmentChart | BolusTable


class ChartsLoaded(Message):
    def __init__(self, snapshot: ChartsSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class ChartsScreen(PhloScreen):
    PAGE = "charts"
    BINDINGS = [
        Binding("c", "next_chart", "Chart", tooltip="Chart: show the next one", id="charts.next"),
        Binding("d", "cycle_days", "Days", id="charts.days"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.days = WINDOWS[0]
        self.chart = CHARTS[0][0]
        self.snapshot: ChartsSnapshot | None = None

    def compose_page(self) -> ComposeResult:
        yield Label("", id="charts-title")
        with ContentSwitcher(initial=self.chart, id="charts"):
            yield TirChart(id="tir-chart")
            yield AgpChart(id="agp-chart")
            yield TrendChart(id="trend-chart")
            yield HourlyChart(id="hourly-chart")
            yield TreatmentChart(id="treatment-chart")
            yield BolusTable(id="bolus-table")

    @work(thread=True, exclusive=True, exit_on_error=False, group="charts")
    def load(self, days: int) -> None:
        snapshot = load_charts(self.phlo.engine, self.phlo.clock(), days)
        if not get_current_worker().is_cancelled:
            self.post_message(ChartsLoaded(snapshot))

    def reload(self) -> None:
        self.render_title()
        self.load(self.days)

    def on_charts_loaded(self, message: ChartsLoaded) -> None:
        self.snapshot = message.snapshot
        self.redraw()

    def redraw(self) -> None:
        """The chart on screen only: the others are drawn when `c` shows them (the bolus table alone
        may be hundreds of rows)."""
        self.show_chart()
        self.render_title()

    def show_chart(self) -> None:
        chart = self.query_one(f"#{self.chart}")
        if self.snapshot is not None and isinstance(chart, Chart):
            chart.show(self.snapshot, self.phlo.units)

    def render_title(self) -> None:
        names = "".join(
            f"[b reverse] {name} [/]" if key == self.chart else f" {name} " for key, name in CHARTS
        )
        branch = " · dev, not yet promoted" if self.snapshot and self.snapshot.branch == "dev" else ""
        note = self.snapshot.note() if self.snapshot and self.snapshot.days == self.days else ""
        self.query_one("#charts-title", Label).update(
            f"{names} · last {self.days} d{branch}" + (f"\n[b]{note}[/]" if note else "")
        )

    def action_next_chart(self) -> None:
        keys = [key for key, _ in CHARTS]
        self.chart = keys[(keys.index(self.chart) + 1) % len(keys)]
        self.query_one(ContentSwitcher).current = self.chart
        self.show_chart()
        self.render_title()

    def action_cycle_days(self) -> None:
        if not self.phlo.engine_started():
            return
        self.days = WINDOWS[(WINDOWS.index(self.days) + 1) % len(WINDOWS)]
        self.reload()
