"""Page 1: the newest reading, the last 24 h, time in range today and over 14 days, and any freshness alert."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Label
from textual.worker import get_current_worker

from engine.api.pages import OverviewSnapshot, PipelineStatus, load_overview
from engine.api.pages.overview import load_early_overview
from phlo_tui.screens.base import PhloScreen
from phlo_tui.widgets.band_panel import BandPanel
from phlo_tui.widgets.reading import LatestReading
from phlo_tui.widgets.trace_plot import TracePlot


class OverviewLoaded(Message):
    def __init__(self, snapshot: OverviewSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class OverviewScreen(PhloScreen):
    PAGE = "overview"

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: OverviewSnapshot | None = None
        self._drawn: tuple[OverviewSnapshot, str | None] | None = None
        """What the widgets show: a poll or a key that changes none of it redraws nothing."""

    def compose_page(self) -> ComposeResult:
        yield Label("", id="freshness-alert")
        with Horizontal(id="overview-top"):
            yield LatestReading(id="reading")
            yield BandPanel(id="bands")
        yield TracePlot(id="trace")

    @work(thread=True, exclusive=True, exit_on_error=False, group="overview")
    def load(self) -> None:
        snapshot = load_overview(self.phlo.engine, self.phlo.zone, self.phlo.clock())
        if not get_current_worker().is_cancelled:
            self.post_message(OverviewLoaded(snapshot))

    @work(thread=True, exclusive=True, exit_on_error=False, group="overview")
    def load_early(self) -> None:
        """The engine's own read (same group) cancels this one when EngineReady comes first."""
        try:
            snapshot = load_early_overview(self.phlo.settings, self.phlo.clock())
        finally:
            self.phlo.early_read.set()
        if snapshot is None:
            self.phlo.early_missed = True
        elif not get_current_worker().is_cancelled:
            self.post_message(OverviewLoaded(snapshot))

    def reload(self) -> None:
        self.load()

    def read_early(self) -> None:
        self.load_early()

    def on_overview_loaded(self, message: OverviewLoaded) -> None:
        self.snapshot = message.snapshot
        self.render_snapshot()

    def status_polled(self, previous: PipelineStatus | None, status: PipelineStatus) -> None:
        super().status_polled(previous, status)
        self.render_alert()

    def redraw(self) -> None:
        self.render_snapshot()

    def render_snapshot(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        units = self.phlo.units
        # Without readings nothing on the page is in units: a `u` then only changes the tabs' note.
        drawn = (snapshot, units if snapshot.latest is not None or snapshot.trace else None)
        if drawn == self._drawn:
            self.render_alert()
            return
        self._drawn = drawn
        self.query_one(LatestReading).show(snapshot, units)
        self.query_one(BandPanel).show(snapshot, units)
        self.query_one(TracePlot).show(snapshot, units)
        self.render_alert()

    def render_alert(self) -> None:
        """The freshness alert when no reading came for a while; the old reading is then dimmed."""
        label = self.query_one("#freshness-alert", Label)
        freshness = self.phlo.pipeline.freshness if self.phlo.pipeline else None
        level = freshness.level if freshness else "ok"
        alerting = level in ("warning", "error")
        label.set_class(level == "warning", "warning")
        label.set_class(level == "error", "error")
        label.display = alerting
        self.query_one(LatestReading).set_class(alerting, "stale")
        if freshness is not None and alerting:
            label.update(f"⚠ {freshness.message}")
