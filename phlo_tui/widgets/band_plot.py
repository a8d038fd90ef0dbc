"""Base of the dashboard's plots: a PlotextPlot redrawn from a snapshot at each render, in the band colours of app.tcss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from phlo_tui.widgets.glucose import BANDS, Band, glucose_text, to_units

RGB = tuple[int, int, int]
ROUND_STEP = {"mg/dL": 50, "mmol/L": 2}
"""The step of a glucose axis's round ticks."""


class BandPlot(PlotextPlot):
    """Subclasses implement `draw()` with `self.plt`; `empty_text` shows when there is nothing to plot."""

    COMPONENT_CLASSES = {
        *(f"band-plot--{b.css}" for b in BANDS),
        "band-plot--range",
        "band-plot--line",
        "band-plot--muted",
        "band-plot--insulin",
        "band-plot--carbs",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.units = "mg/dL"
        self.empty_text = "no data yet"

    def has_data(self) -> bool:
        raise NotImplementedError

    def draw(self) -> None:
        raise NotImplementedError

    def rgb(self, component: str) -> RGB:
        color = self.get_component_rich_style(f"band-plot--{component}").color
        if color is None:
            return (200, 200, 200)
        triplet = color.get_truecolor()
        return (triplet.red, triplet.green, triplet.blue)

    def band_rgb(self, band: Band) -> RGB:
        return self.rgb(band.css)

    def y(self, mg_dl: float) -> float:
        return to_units(mg_dl, self.units)

    def range_lines(self) -> None:
        """Mark the consensus target range, 70–180 mg/dL (3.9–10.0 mmol/L)."""
        for level in (70, 180):
            self.plt.horizontal_line(self.y(level), color=self.rgb("range"))

    def glucose_limits(self, highest_mg_dl: float) -> tuple[float, float]:
        return self.y(40), self.y(max(300, highest_mg_dl + 10))

    def glucose_axis(self, highest_mg_dl: float) -> None:
        """Glucose from 40 mg/dL up, ticks at the band edges 54, 70, 180 and 250."""
        self.plt.ylim(*self.glucose_limits(highest_mg_dl))
        levels = (54, 70, 180, 250)
        labels = [f"{self.y(v):.1f}" if self.units == "mmol/L" else str(v) for v in levels]
        self.plt.yticks([self.y(v) for v in levels], labels)

    def target_axis(self, highest_mg_dl: float) -> None:
        """A glucose axis from 0 with round ticks (every 50 mg/dL, 2 mmol/L) and the target edges 70 and
        180 (3.9 and 10.0) labelled; a round tick within about a row of a target gives way to it."""
        step = ROUND_STEP[self.units]
        top = math.ceil(self.y(max(200, highest_mg_dl)) / step) * step
        self.plt.ylim(0, top)
        targets = [self.y(70), self.y(180)]
        near = 1.5 * top / max(1, self.size.height - 4)
        ticks = [float(t) for t in range(0, int(top) + 1, step) if all(abs(t - g) >= near for g in targets)]
        labels = [f"{t:g}" for t in ticks] + [glucose_text(v, self.units) for v in (70, 180)]
        self.plt.yticks([*ticks, *targets], labels)

    def day_axis(self, since: date, days: int) -> None:
        """x is days since `since`; about seven date ticks."""
        step = max(1, days // 7)
        ticks = [float(t) for t in range(0, days, step)]
        self.plt.xticks(ticks, [(since + timedelta(days=t)).strftime("%m-%d") for t in ticks])
        self.plt.xlim(-1, days)

    def fill_between(
        self,
        xs: Sequence[float],
        lows: Sequence[float],
        highs: Sequence[float],
        color: RGB,
        limits: tuple[float, float],
    ) -> None:
        """Shade between two piecewise-linear curves with braille dots (plotext cannot fill a band);
        `limits` is the y axis, which sets how dense the dots must be to fill every braille cell."""
        if len(xs) < 2:
            return
        columns = max(2, 2 * self.size.width)
        step = (limits[1] - limits[0]) / max(2, 4 * self.size.height)
        dots_x: list[float] = []
        dots_y: list[float] = []
        for c in range(columns + 1):
            x = xs[0] + (xs[-1] - xs[0]) * c / columns
            i = min(max(0, next((k for k in range(len(xs) - 1) if xs[k + 1] >= x), len(xs) - 2)), len(xs) - 2)
            f = 0.0 if xs[i + 1] == xs[i] else (x - xs[i]) / (xs[i + 1] - xs[i])
            low = lows[i] + (lows[i + 1] - lows[i]) * f
            high = highs[i] + (highs[i + 1] - highs[i]) * f
            y = low
            while y <= high:
                dots_x.append(x)
                dots_y.append(y)
                y += step
        self.plt.scatter(dots_x, dots_y, marker="braille", color=color)

    def render(self) -> RenderResult:
        if not self.has_data():
            return Text(self.empty_text, style=self.get_component_rich_style("band-plot--muted"))
        self.plt.clear_figure()
        self.draw()
        return super().render()
