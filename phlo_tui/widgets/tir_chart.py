"""Daily time in range over 14, 30 or 90 days: one stacked bar of the five bands per local day, under a
legend of the bands' colours."""

from __future__ import annotations

from typing import Any, cast

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.app import RenderResult

from phlo_tui.widgets.charts_plot import ChartsPlot
from phlo_tui.widgets.glucose import BANDS

LEGEND_MARK = "■"
TITLE_MARGIN = 6
"""Columns of the plot's width the title may not use (the y axis's labels)."""


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
        self.plt.title(self.title())

    def title(self) -> str:
        """What the bars are, with a legend of the bands in the chosen units (its squares are coloured in
        `render`); the bands by their upper edge when the ranges do not fit."""
        for labels in ([b.label(self.units) for b in BANDS], [b.edge_label(self.units) for b in BANDS]):
            legend = " ".join(f"{LEGEND_MARK}{label}" for label in labels)
            title = f"% of readings per day · {legend} {self.units}"
            if len(title) <= self.size.width - TITLE_MARGIN:
                break
        return title

    def render(self) -> RenderResult:
        shown = super().render()
        if isinstance(shown, Text) and self.has_data():
            title_line = shown.plain.split("\n", 1)[0]
            marks = [i for i, char in enumerate(title_line) if char == LEGEND_MARK]
            for band, at in zip(BANDS, marks, strict=False):
                shown.stylize(Style(color=Color.from_rgb(*self.band_rgb(band))), at, at + 1)
        return shown
