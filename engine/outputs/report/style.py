"""The clinic report's look: paper sizes, colours after the AGP report's, the bands' labels in both units,
how figures are written, and matplotlib's settings for the page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib

PAPER_INCHES = {"A4": (8.27, 11.69), "Letter": (8.5, 11.0)}
PNG_DPI = 150
MG_PER_MMOL = 18.018
"""As silver.fct_glucose_readings converts: mmol/L = mg/dL / 18.018."""

# Colours after the AGP report's, each band a distinct grey when printed in black and white
# (luminance, very high to very low: 0.59, 0.80, 0.36, 0.57, 0.24); neighbours are split by white.
BAND_COLOURS = {
    "very_high": "#E8822A",
    "high": "#F6D23C",
    "in_range": "#2E7D32",
    "low": "#EF6C5E",
    "very_low": "#8B1A1A",
}
TARGET_FILL = "#DCEFDC"
TARGET_LINE = "#2E7D32"
OUTER_BAND = "#A9C4E4"
INNER_BAND = "#4F7FBF"
MEDIAN_LINE = "#0B2A5B"
INK = "#111111"
MUTED = "#555555"


@dataclass(frozen=True)
class BandRow:
    key: str
    name: str
    mg_range: str
    mmol_range: str

    def range_text(self, units: str) -> str:
        return self.mmol_range if units == "mmol/L" else self.mg_range


BAND_ROWS = (
    BandRow("very_high", "Very high", ">250", ">13.9"),
    BandRow("high", "High", "181–250", "10.1–13.9"),
    BandRow("in_range", "Target range", "70–180", "3.9–10.0"),
    BandRow("low", "Low", "54–69", "3.0–3.8"),
    BandRow("very_low", "Very low", "<54", "<3.0"),
)
THRESHOLDS_MG = (54, 70, 180, 250, 350)
MMOL_TICK_TEXT = {54: "3.0", 70: "3.9", 180: "10.0", 250: "13.9", 350: "19.4"}
"""mmol/L labels of the mg/dL thresholds, as portals print them (docs/metrics.md: 3.0 is 54, 10.0 is 180)."""


def glucose_text(mg_dl: float, units: str) -> str:
    return f"{mg_dl / MG_PER_MMOL:.1f}" if units == "mmol/L" else f"{mg_dl:.0f}"


def tick_text(mg_dl: int, units: str) -> str:
    """An axis label at a threshold: 70 or, in mmol/L, 3.9."""
    return MMOL_TICK_TEXT[mg_dl] if units == "mmol/L" else str(mg_dl)


def duration_text(pct: float) -> str:
    """A share of the day as time per day: '17 h 23 min', '58 min'."""
    minutes = round(pct / 100 * 24 * 60)
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if hours else f"{rest} min"


def pct_text(value: float) -> str:
    return f"{value:.1f} %"


@contextmanager
def report_style() -> Iterator[None]:
    """Fonts embedded as Type 3 subsets with their Unicode map (pdffonts lists them, pdftotext reads
    them): TrueType embedding (`pdf.fonttype` 42) reads the same but took four times as long to write."""
    with matplotlib.rc_context(
        {
            "pdf.fonttype": 3,
            "font.family": "DejaVu Sans",
            "font.size": 7.5,
            "axes.linewidth": 0.6,
            "axes.edgecolor": MUTED,
            "xtick.color": MUTED,
            "ytick.color": MUTED,
            "xtick.labelsize": 6.5,
            "ytick.labelsize": 6.5,
            "xtick.major.size": 2,
            "ytick.major.size": 2,
        }
    ):
        yield
