"""Daily time in range over 14, 30 or 90 days: one stacked bar of the five bands per local day."""

from __future__ import annotations

from typing import Any, cast

from phlo_tui.widgets.charts_plot import ChartsPlot
from phlo_tui.widgets.glucose import BANDS


class TirChart(ChartsPlot):
    EMPTY_TEXT = "no daily metrics in this window"

    def has_data(self) -> bool:
        return self.snapshot is not None and bool(self.snapshot.daily)

    def draw(self) -> None:
        assert self.snapshot is not None
        days = self.snapshot.daily
        self.plt.stacked_bar(
            [(d.day - self.snapshot.since).days for d in days],
            [[d.shares[b.key] for d in days] for b in BANDS],
            # A stacked bar takes one colour per series; textual-plotext's stub says one colour.
            color=cast(Any, [self.band_rgb(b) for b in BANDS]),
            width=0.6,
        )
        self.day_axis(self.snapshot.since, self.snapshot.days)
        self.plt.ylim(0, 100)
        self.plt.yticks([0, 25, 50, 70, 100])
        self.plt.title(f"time in range per day · last {self.snapshot.days} d · % of readings")
