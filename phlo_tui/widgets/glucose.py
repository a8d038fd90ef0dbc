"""Glucose display rules shared by the widgets: consensus bands, trend arrows, units and ages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MMOL_PER_MG = 1 / 18.018


@dataclass(frozen=True)
class Band:
    """One consensus range (docs/metrics.md); `css` names its colour class in app.tcss."""

    key: str
    name: str
    mg_label: str
    mmol_label: str
    css: str

    def label(self, units: str) -> str:
        return self.mmol_label if units == "mmol/L" else self.mg_label

    def edge_label(self, units: str) -> str:
        """The band by its upper edge (`≤3.8`), for a legend read left to right where the ranges do not fit."""
        label = self.label(units)
        return label if label[0] in "<>" else "≤" + label.split("–")[1]


VERY_LOW = Band("very_low", "very low", "<54", "<3.0", "band-very-low")
LOW = Band("low", "low", "54–69", "3.0–3.8", "band-low")
IN_RANGE = Band("in_range", "in range", "70–180", "3.9–10.0", "band-in-range")
HIGH = Band("high", "high", "181–250", "10.1–13.9", "band-high")
VERY_HIGH = Band("very_high", "very high", ">250", ">13.9", "band-very-high")
BANDS = (VERY_LOW, LOW, IN_RANGE, HIGH, VERY_HIGH)

ARROWS = {
    "DoubleUp": "↑↑",
    "SingleUp": "↑",
    "FortyFiveUp": "↗",
    "Flat": "→",
    "FortyFiveDown": "↘",
    "SingleDown": "↓",
    "DoubleDown": "↓↓",
}


def band_of(mg_dl: float) -> Band:
    """The consensus band of one reading: 70 and 180 are in range, 54 is low, 250 is high."""
    if mg_dl < 54:
        return VERY_LOW
    if mg_dl < 70:
        return LOW
    if mg_dl <= 180:
        return IN_RANGE
    if mg_dl <= 250:
        return HIGH
    return VERY_HIGH


def arrow(direction: str | None) -> str:
    """The trend arrow of a Nightscout `direction`; '?' when the uploader could not compute one."""
    return ARROWS.get(direction or "", "?")


def to_units(mg_dl: float, units: str) -> float:
    return mg_dl * MMOL_PER_MG if units == "mmol/L" else mg_dl


def glucose_text(mg_dl: float | None, units: str) -> str:
    """A glucose value as people read it: whole mg/dL, or mmol/L with one decimal."""
    if mg_dl is None:
        return "–"
    if units == "mmol/L":
        return f"{mg_dl * MMOL_PER_MG:.1f}"
    return f"{mg_dl:.0f}"


def ago(then: datetime, now: datetime) -> str:
    """'just now', '4 min ago', '2 h 5 min ago', '3 d ago'; a time ahead of `now` reads 'just now'."""
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min ago" if rest else f"{hours} h ago"
    return f"{minutes // (24 * 60)} d ago"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return str(timedelta(seconds=round(seconds)))
