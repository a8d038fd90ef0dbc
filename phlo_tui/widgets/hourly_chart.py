"""The hourly pattern: mean glucose by local hour of day over the last 90 days (marts layer)."""

from __future__ import annotations

from phlo_tui.widgets.charts_plot import ChartsPlot


class HourlyChart(ChartsPlot):
    EMPTY_TEXT = "no hourly pattern yet"

    def has_data(self) -> bool:
        return self.snapshot is not None and any(h.mean_mg_dl is not None for h in self.snapshot.hourly)

    def draw(self) -> None:
        assert self.snapshot is not None
        hours = [h for h in self.snapshot.hourly if h.mean_mg_dl is not None]
        self.plt.bar(
            [h.hour for h in hours],
            [self.y(h.mean_mg_dl or 0) for h in hours],
            color=self.rgb("line"),
            width=0.6,
        )
        self.range_lines()
        self.target_axis(max(h.mean_mg_dl or 0 for h in hours))
        self.plt.xticks([0, 3, 6, 9, 12, 15, 18, 21], ["00", "03", "06", "09", "12", "15", "18", "21"])
        self.plt.title(f"mean by hour of day · 90 d · {self.units}")
