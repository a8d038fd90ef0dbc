"""Daily insulin (bars, units on the left axis) and carbs (line, grams on the right axis) of the window."""

from __future__ import annotations

from phlo_tui.widgets.charts_plot import ChartsPlot


class TreatmentChart(ChartsPlot):
    EMPTY_TEXT = "no treatments yet: boluses and carbs appear here once Nightscout has them"

    def has_data(self) -> bool:
        return self.snapshot is not None and bool(self.snapshot.treatments)

    def draw(self) -> None:
        assert self.snapshot is not None
        plt, snapshot = self.plt, self.snapshot
        xs = [(d.day - snapshot.since).days for d in snapshot.treatments]
        insulin = [d.insulin_units for d in snapshot.treatments]
        carbs = [d.carbs_g for d in snapshot.treatments]
        plt.bar(xs, insulin, color=self.rgb("insulin"), width=0.5, yside="left")
        plt.plot(xs, carbs, color=self.rgb("carbs"), marker="hd", yside="right")
        self.day_axis(snapshot.since, snapshot.days)
        plt.ylim(0, max([*insulin, 1.0]) * 1.15, yside="left")  # type: ignore[arg-type]
        plt.ylim(0, max([*carbs, 1.0]) * 1.15, yside="right")  # type: ignore[arg-type]
        plt.title(f"insulin U/day (bars, left) · carbs g/day (line, right) · last {snapshot.days} d")
