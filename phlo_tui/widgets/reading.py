"""The newest glucose reading, big, with its trend arrow and age, coloured by its consensus band."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Digits, Label

from engine.api.pages import OverviewSnapshot
from phlo_tui.widgets.glucose import ARROWS, BANDS, ago, arrow, band_of, glucose_text


class LatestReading(Vertical):
    """Classes `band-*` (app.tcss) colour it by the reading's band; the page sets `stale` on an old reading."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="reading-row"):
            yield Digits("–", id="reading-value")
            yield Label("", id="reading-arrow")
        yield Label("loading…", id="reading-trend")
        yield Label("", id="reading-age")

    def show(self, snapshot: OverviewSnapshot, units: str) -> None:
        for band in BANDS:
            self.remove_class(band.css)
        latest = snapshot.latest
        value = self.query_one("#reading-value", Digits)
        trend = self.query_one("#reading-trend", Label)
        age = self.query_one("#reading-age", Label)
        if latest is None:
            value.update("–")
            self.query_one("#reading-arrow", Label).update("")
            trend.update("no readings yet")
            age.update("press r to run")
            return
        band = band_of(latest.mg_dl)
        self.add_class(band.css)
        value.update(glucose_text(latest.mg_dl, units))
        self.query_one("#reading-arrow", Label).update(arrow(latest.direction))
        known = latest.direction in ARROWS
        trend.update(f"{units} · {band.name}" if known else f"{units} · {latest.direction or 'no trend'}")
        age.update(ago(latest.ts, snapshot.now))
