"""Base of the Charts page's plots: each draws one view of the page's `ChartsSnapshot`."""

from __future__ import annotations

from engine.api.pages import ChartsSnapshot
from phlo_tui.widgets.band_plot import BandPlot


class ChartsPlot(BandPlot):
    """Holds the latest snapshot and units; subclasses set EMPTY_TEXT and implement has_data/draw."""

    EMPTY_TEXT = "no data yet"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: ChartsSnapshot | None = None
        self.empty_text = self.EMPTY_TEXT

    def show(self, snapshot: ChartsSnapshot, units: str) -> None:
        self.snapshot, self.units = snapshot, units
        self.refresh()
