"""The last 24 hours of readings as a line in each band's colour, between the lines of the 70–180 target range,
with boluses and carbs marked, and glucose scans (LibreView imports) as points of their own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from engine.api.pages import OverviewSnapshot
from phlo_tui.widgets.band_plot import BandPlot
from phlo_tui.widgets.glucose import Band, band_of

MARKER_STRIP = 0.25
"""The share of the glucose range added above it for the bolus and carb markers."""
SCAN_MARKER = "○"
"""A scan: a point in its band's colour, off the line (a scan is no reading: no figure counts it)."""
MAX_JOINED_GAP = timedelta(minutes=15)
"""Readings further apart than this (three missed 5-minute readings) are not joined by the line."""


def trace_runs(trace: Sequence[tuple[datetime, int]]) -> list[tuple[Band, list[tuple[datetime, int]]]]:
    """The readings as lines to draw, each in one band's colour: a run of readings in one band, joined to
    the next run's first reading so that the line goes on across a band edge; a gap of more than
    MAX_JOINED_GAP between readings ends the line (a missing stretch is not drawn as data)."""
    runs: list[tuple[Band, list[tuple[datetime, int]]]] = []
    previous: tuple[datetime, int] | None = None
    for ts, mg in sorted(trace):
        band = band_of(mg)
        joined = previous is not None and ts - previous[0] <= MAX_JOINED_GAP
        if joined and runs[-1][0] == band:
            runs[-1][1].append((ts, mg))
        else:
            if joined:
                runs[-1][1].append((ts, mg))
            runs.append((band, [(ts, mg)]))
        previous = (ts, mg)
    return runs


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
        highest = max(mg for _, mg in (*self.snapshot.trace, *self.snapshot.scans))
        top: float = max(300, highest + 10)
        if self.snapshot.treatments:
            # A strip above the readings for the markers, so that they never hide a reading.
            top += MARKER_STRIP * (top - 40)
        # The target range as its two edges, not shaded: plotext keeps a shading character over a braille
        # dot in the same cell, which broke the line into scattered dots wherever it was in range.
        self.range_lines()
        for band, points in trace_runs(self.snapshot.trace):
            xs = [(ts - now).total_seconds() / 3600 for ts, _ in points]
            plt.plot(xs, [self.y(mg) for _, mg in points], marker="braille", color=self.band_rgb(band))
        scans = self.scan_marks()
        plt.xlim(-24, 0)
        plt.ylim(self.y(40), self.y(top))
        legend = self.treatment_marks(top, highest) + scans
        ticks = [-24.0, -18.0, -12.0, -6.0, 0.0]
        plt.xticks(ticks, [(now + timedelta(hours=t)).astimezone(zone).strftime("%H:%M") for t in ticks])
        levels = (54, 70, 180, 250)
        plt.yticks(
            [self.y(v) for v in levels],
            [f"{self.y(v):g}" if self.units == "mg/dL" else f"{self.y(v):.1f}" for v in levels],
        )
        plt.title(f"last 24 h · {self.units}{legend}")

    def scan_marks(self) -> str:
        """Each scan as SCAN_MARKER at its glucose, in its band's colour; returns the legend, if any."""
        assert self.snapshot is not None
        now, scans = self.snapshot.now, self.snapshot.scans
        for band in dict.fromkeys(band_of(mg) for _, mg in scans):
            points = [(ts, mg) for ts, mg in scans if band_of(mg) == band]
            self.plt.scatter(
                [(ts - now).total_seconds() / 3600 for ts, _ in points],
                [self.y(mg) for _, mg in points],
                marker=SCAN_MARKER,
                color=self.band_rgb(band),
            )
        return f" · {SCAN_MARKER} scan" if scans else ""

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
