"""The ambulatory glucose profile: median by local hour with the 25–75 and 5–95 percentile bands, 14 days."""

from __future__ import annotations

from phlo_tui.widgets.charts_plot import ChartsPlot


class AgpChart(ChartsPlot):
    EMPTY_TEXT = "no glucose profile yet"

    def has_data(self) -> bool:
        return self.snapshot is not None and any(h.readings for h in self.snapshot.agp)

    def draw(self) -> None:
        assert self.snapshot is not None
        hours = [h for h in self.snapshot.agp if h.p50 is not None]
        xs = [float(h.hour) for h in hours]
        highest = max(h.p95 or 0.0 for h in hours)

        def curve(values: list[float | None]) -> list[float]:
            return [self.y(v or 0.0) for v in values]

        limits = self.glucose_limits(highest)
        outer = (curve([h.p05 for h in hours]), curve([h.p95 for h in hours]))
        self.fill_between(xs, *outer, self.rgb("muted"), limits)
        inner = (curve([h.p25 for h in hours]), curve([h.p75 for h in hours]))
        self.fill_between(xs, *inner, self.rgb("line"), limits)
        self.range_lines()
        self.plt.plot(xs, curve([h.p50 for h in hours]), marker="hd", color=self.rgb("band-in-range"))
        self.plt.xlim(0, 23)
        self.plt.xticks([0, 3, 6, 9, 12, 15, 18, 21], ["00", "03", "06", "09", "12", "15", "18", "21"])
        self.glucose_axis(highest)
        self.plt.title(f"AGP · 14 d · median, 25–75 % and 5–95 % by hour · {self.units}")
