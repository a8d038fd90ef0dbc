"""Time in range of today and the last 14 days as stacked bars of the five bands, with mean, GMI, CV and GRI."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.api.pages import BandShares, OverviewSnapshot
from phlo_tui.widgets.glucose import BANDS, glucose_text

LABEL_WIDTH = 7
PERCENT_WIDTH = 6


def bar_cells(shares: BandShares, width: int) -> list[int]:
    """Cells per band summing to `width`; a band with any reading keeps at least one cell, so lows show."""
    if width <= 0:
        return [0] * len(BANDS)
    raw = [shares.share(b.key) * width / 100.0 for b in BANDS]
    cells = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - cells[i], reverse=True)
    for i in by_remainder[: width - sum(cells)]:
        cells[i] += 1
    for i, r in enumerate(raw):
        if r > 0 and cells[i] == 0:
            cells[i] = 1
            cells[max(range(len(cells)), key=lambda j: cells[j])] -= 1
    return cells


def legend_labels(units: str, shares: list[str], width: int) -> list[str]:
    """The bands' labels for the legend line `■label share ■label share …`: their ranges when the line
    fits in `width` (a panel ≥ 59 columns), else each band by its upper edge (`≤3.8`) so that it stays
    one line at 80 columns in mmol/L; the legend is read left to right as a partition, like the bar."""
    full = [band.label(units) for band in BANDS]
    if legend_width(full, shares) <= width:
        return full
    return [band.edge_label(units) for band in BANDS]


def legend_width(labels: list[str], shares: list[str]) -> int:
    return sum(len(label) + len(share) + 3 for label, share in zip(labels, shares, strict=True)) - 1


def _percent(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


class BandPanel(Widget):
    COMPONENT_CLASSES = {
        *(f"band-panel--{b.css}" for b in BANDS),
        "band-panel--title",
        "band-panel--dim",
        "band-panel--flag",
    }

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: OverviewSnapshot | None = None
        self.units = "mg/dL"

    def show(self, snapshot: OverviewSnapshot, units: str) -> None:
        self.snapshot, self.units = snapshot, units
        self.refresh(layout=True)

    def render(self) -> Text:
        style = self.get_component_rich_style
        dim = style("band-panel--dim")
        out = Text()
        out.append("Time in range", style("band-panel--title"))
        out.append(" · % of readings", dim)
        snapshot = self.snapshot
        if snapshot is None:
            out.append("\nloading…", dim)
            return out
        if snapshot.branch is None:
            out.append("\nno readings yet", dim)
            return out
        if snapshot.branch == "dev":
            out.append(" · dev, not yet promoted", style("band-panel--flag"))
        width = max(10, self.size.width - LABEL_WIDTH - PERCENT_WIDTH)
        rows = (
            ("today", snapshot.today, snapshot.today_data),
            (f"{snapshot.window_days} d", snapshot.window, snapshot.window_data),
        )
        for label, shares, data in rows:
            out.append(f"\n{label:<{LABEL_WIDTH}}")
            if shares is None or shares.readings == 0:
                out.append("no readings", dim)
                continue
            if data is not None and not data.sufficient:
                # Band shares of a few readings read as facts: say how little there is instead.
                out.append(f"not enough data: {data.readings} readings, {data.coverage_pct:.0f} %", dim)
                continue
            for band, cells in zip(BANDS, bar_cells(shares, width), strict=True):
                out.append("█" * cells, style(f"band-panel--{band.css}"))
            out.append(f"{_percent(shares.in_range):>{PERCENT_WIDTH - 2}} %")
        window = snapshot.window
        if window is None:
            return out
        out.append("\n")
        data = snapshot.window_data
        if data is not None and not data.sufficient:
            out.append(data.message(), style("band-panel--flag"))
            out.append("\nmean ", dim)
            out.append(f"{glucose_text(window.mean_mg_dl, self.units)} {self.units}")
            out.append("  CGM ", dim)
            out.append(f"{data.coverage_pct:.0f}%")
            return out
        percents = [_percent(window.share(band.key)) for band in BANDS]
        labels = legend_labels(self.units, percents, self.size.width)
        for band, label, share in zip(BANDS, labels, percents, strict=True):
            out.append("■", style(f"band-panel--{band.css}"))
            out.append(f"{label} ", dim)
            out.append(f"{share} ")
        out.rstrip()
        out.append("\n")
        out.append("mean ", dim)
        out.append(f"{glucose_text(window.mean_mg_dl, self.units)} {self.units}")
        out.append("  GMI ", dim)
        gmi = window.gmi_pct
        out.append("–" if gmi is None else f"{gmi:.1f}%")
        cv = window.cv_pct
        out.append("  CV ", dim)
        out.append("–" if cv is None else f"{cv:.1f}%")
        out.append("  GRI ", dim)
        out.append("–" if window.gri is None else f"{window.gri:.0f}")
        if snapshot.coverage_pct is not None:
            out.append("  CGM ", dim)
            out.append(f"{snapshot.coverage_pct:.0f}%")
        return out
