"""The last 24 hours of readings, each dot in its band's colour, over the shaded 70–180 target range,
with boluses and carbs marked."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from phlo_tui.snapshot import OverviewSnapshot
from phlo_tui.widgets.band_plot import BandPlot
from phlo_tui.widgets.glucose import BANDS, band_of

MARKER_STRIP = 0.25
"""The share of the glucose range added above it for the bolus and carb markers."""


class TracePlot(BandPlot):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: OverviewSnapshot | None = None
        self.empty_text = "loading…"
        """Until the first snapshot (the engine starts after the first paint); then what an empty day says."""

    def show(self, snapshot: OverviewSnapshot, units: str) -> None:
        self.snapshot, self.units = snapshot, units
        self.empty_text = "no readings in the last 24 h"
        self.refresh()

    def has_data(self) -> bool:
        return self.snapshot is not None and bool(self.snapshot.trace)

    def draw(self) -> None:
        assert self.snapshot is not None
        plt, now = self.plt, self.snapshot.now
        zone = ZoneInfo(self.snapshot.timezone)
        by_band: dict[str, tuple[list[float], list[float]]] = {b.key: ([], []) for b in BANDS}
        for ts, mg in self.snapshot.trace:
            xs, ys = by_band[band_of(mg).key]
            xs.append((ts - now).total_seconds() / 3600)
            ys.append(self.y(mg))
        highest = max(mg for _, mg in self.snapshot.trace)
        top: float = max(300, highest + 10)
        if self.snapshot.treatments:
            # A strip above the readings for the markers, so that they never hide a reading.
            top += MARKER_STRIP * (top - 40)
        # The target range shaded first, so that the readings draw over it.
        self.shade(self.y(70), self.y(180), (-24.0, 0.0), self.rgb("range-fill"), (self.y(40), self.y(top)))
        self.range_lines()
        for band in BANDS:
            xs, ys = by_band[band.key]
            if xs:
                plt.scatter(xs, ys, marker="braille", color=self.band_rgb(band))
        plt.xlim(-24, 0)
        plt.ylim(self.y(40), self.y(top))
        legend = self.treatment_marks(top, highest)
        ticks = [-24.0, -18.0, -12.0, -6.0, 0.0]
        plt.xticks(ticks, [(now + timedelta(hours=t)).astimezone(zone).strftime("%H:%M") for t in ticks])
        levels = (54, 70, 180, 250)
        plt.yticks(
            [self.y(v) for v in levels],
            [f"{self.y(v):g}" if self.units == "mg/dL" else f"{self.y(v):.1f}" for v in levels],
        )
        plt.title(f"last 24 h · {self.units}{legend}")

    def treatment_marks(self, top_mg_dl: float, highest_mg_dl: float) -> str:
        """Boluses (▼) along the top edge and carbs (◆) under them, both above the highest reading;
        returns the legend, if any."""
        assert self.snapshot is not None
        now, marks = self.snapshot.now, self.snapshot.treatments
        step = (top_mg_dl - max(300, highest_mg_dl + 10)) / 3
        legend = []
        for kind, marker, level, component in (
            ("bolus", "▼", top_mg_dl - step / 2, "insulin"),
            ("carbs", "◆", top_mg_dl - 2 * step, "carbs"),
        ):
            hours = [
                (m.ts - now).total_seconds() / 3600
                for m in marks
                if (m.insulin_units if kind == "bolus" else m.carbs_g)
            ]
            if hours:
                self.plt.scatter(
                    hours, [self.y(level)] * len(hours), marker=marker, color=self.rgb(component)
                )
                legend.append(f"{marker} {kind}")
        return f" · {' '.join(legend)}" if legend else ""
