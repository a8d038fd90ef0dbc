"""Mean glucose per local day over the chosen window; the axis also reads as GMI, which is linear in the mean."""

from __future__ import annotations

from phlo_tui.widgets.charts_plot import ChartsPlot
from phlo_tui.widgets.glucose import glucose_text

GMI_TICKS = (5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0)


def mean_for_gmi(gmi_pct: float) -> float:
    return (gmi_pct - 3.31) / 0.02392


class TrendChart(ChartsPlot):
    EMPTY_TEXT = "no daily metrics in this window"

    def has_data(self) -> bool:
        return self.snapshot is not None and bool(self.snapshot.daily)

    def draw(self) -> None:
        assert self.snapshot is not None
        plt, snapshot = self.plt, self.snapshot
        means = [d.mean_mg_dl for d in snapshot.daily]
        low, high = min(means) - 15, max(means) + 15
        # One line per run of consecutive days: a missing day breaks the line, never bridges it.
        runs: list[list[tuple[int, float]]] = []
        for d in snapshot.daily:
            x = (d.day - snapshot.since).days
            if not runs or x != runs[-1][-1][0] + 1:
                runs.append([])
            runs[-1].append((x, self.y(d.mean_mg_dl)))
        for run in runs:
            plt.plot([x for x, _ in run], [y for _, y in run], marker="hd", color=self.rgb("line"))
        self.day_axis(snapshot.since, snapshot.days)
        plt.ylim(self.y(low), self.y(high))
        ticks = [g for g in GMI_TICKS if low <= mean_for_gmi(g) <= high]
        plt.yticks(
            [self.y(mean_for_gmi(g)) for g in ticks],
            [f"{glucose_text(mean_for_gmi(g), self.units)}·{g:.1f}%" for g in ticks],
        )
        plt.title(f"daily mean {self.units} · GMI % · last {snapshot.days} d")
