"""The clinic report drawn with matplotlib (Agg, no display): the AGP page, and a treatments page when
the period has any.

Laid out as the International Diabetes Center's AGP report (docs/report.md): header, glucose statistics
and targets beside the time-in-ranges bar, the AGP curve, the daily profiles. Imported only when a
report is written: matplotlib takes a second to import, and the command line and the dashboard start
without it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from statistics import mean, median

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from engine.api.treatment_reads import BolusOutcome
from engine.outputs.report.data import (
    AGP_SLOT_MINUTES,
    AGP_WINDOW_MINUTES,
    MIN_COVERAGE_PCT,
    MIN_DAYS,
    PROFILE_DAYS,
    DayProfile,
    ReportData,
)

# matplotlib subsets the embedded fonts with fontTools, which logs every table it prunes at INFO (`-v`).
logging.getLogger("fontTools").setLevel(logging.WARNING)

PAPER_INCHES = {"A4": (8.27, 11.69), "Letter": (8.5, 11.0)}
PNG_DPI = 150
MG_PER_MMOL = 18.018
"""As silver.fct_glucose_readings converts: mmol/L = mg/dL / 18.018."""
HEADER_BOTTOM = 0.935 - 3 * 0.016 - 0.004
"""Where the header ends without the banner: the page below is laid out from there."""
VALUE_X, TARGET_X = 0.345, 0.45
"""Where the statistics' values and targets start (figure fraction); labels start at 0.06."""
GAP_MINUTES = 15
"""A daily trace is broken where readings are further apart than this."""

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
def _style() -> Iterator[None]:
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


def render_pages(data: ReportData, units: str, paper: str, name: str | None) -> list[Figure]:
    """The report's pages as figures: the AGP page, then the treatments page when there are treatments."""
    with _style():
        pages = [_agp_page(data, units, paper, name)]
        if data.has_treatments:
            pages.append(_treatments_page(data, units, paper, name))
    return pages


def write_pdf(pages: list[Figure], path: str, title: str) -> None:
    _defer_import("fontTools.subset")
    from matplotlib.backends.backend_pdf import PdfPages

    with _style(), PdfPages(path, metadata={"Title": title, "Creator": "phlo-tui"}) as pdf:
        for page in pages:
            pdf.savefig(page)


def write_png(page: Figure, path: str) -> None:
    with _style():
        page.savefig(path, format="png", dpi=PNG_DPI, facecolor="white")


def _defer_import(name: str) -> None:
    """Put module `name` in place without running it: it runs when first used. matplotlib's PDF backend
    imports fontTools.subset (0.2 s or more) but uses it only to embed TrueType (`pdf.fonttype` 42), never
    for the Type 3 fonts the report embeds."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    # As the parent's attribute, so that `from parent import child` takes it without touching it (the
    # import system would read its __spec__, and so run it).
    setattr(importlib.import_module(parent), child, module)


# the AGP page


def _agp_page(data: ReportData, units: str, paper: str, name: str | None) -> Figure:
    fig = Figure(figsize=PAPER_INCHES[paper], facecolor="white")
    top = _header(fig, data, units, name, "AGP Report: Continuous Glucose Monitoring")
    _section(fig, top - 0.012, "Glucose statistics and targets", x=0.06)
    _section(fig, top - 0.012, "Time in ranges", x=0.60)
    _statistics(fig, data, units, top - 0.035)
    _time_in_ranges(fig, data, units, top)
    agp_top = top - 0.335
    _section(fig, agp_top, "Ambulatory Glucose Profile (AGP)", x=0.06)
    smoothing = (
        f"Percentiles of all readings within ±{AGP_WINDOW_MINUTES // 2} min of each "
        f"{AGP_SLOT_MINUTES}-min time of day over the {data.period.days} days; no other smoothing."
    )
    fig.text(0.06, agp_top - 0.017, smoothing, fontsize=6.5, color=MUTED, va="top")
    # The not-enough-data banner pushes the page down: the AGP gives up that height.
    squeeze = HEADER_BOTTOM - top
    agp_height = 0.225 - squeeze
    _agp(fig.add_axes((0.09, agp_top - 0.03 - agp_height, 0.80, agp_height)), data, units)
    daily_top = agp_top - 0.065 - agp_height
    shown = min(PROFILE_DAYS, data.period.days)
    title = "Daily glucose profiles"
    if data.period.days > shown:
        title += f" (the last {shown} of the period's {data.period.days} days)"
    _section(fig, daily_top, title, x=0.06)
    _daily_profiles(fig, data, units, daily_top - 0.025)
    _footer(fig, data)
    return fig


def _header(fig: Figure, data: ReportData, units: str, name: str | None, title: str) -> float:
    """Title, the not-enough-data banner, then the period's facts; returns where the page goes on."""
    fig.text(0.06, 0.968, title, fontsize=13, weight="bold", color=INK, va="top")
    y = 0.935
    if not data.sufficient:
        fig.text(
            0.5,
            y,
            _insufficiency(data),
            ha="center",
            va="top",
            fontsize=8,
            weight="bold",
            color="#8B1A1A",
            bbox={"boxstyle": "square,pad=0.5", "facecolor": "white", "edgecolor": INK, "linewidth": 1.4},
        )
        y -= 0.04
    stats = data.stats
    left = [
        ("Name", name or "—"),
        ("Period", data.period.label()),
        ("% time CGM active", pct_text(stats.cgm_active_pct)),
    ]
    right = [
        ("Units", units),
        ("Time zone", data.timezone),
        ("Data through", f"{stats.last_reading:%d %b %Y %H:%M}"),
    ]
    for x, rows in ((0.06, left), (0.60, right)):
        for i, (label, value) in enumerate(rows):
            fig.text(x, y - i * 0.016, f"{label}:", fontsize=7.5, color=MUTED, va="top")
            fig.text(x + 0.13, y - i * 0.016, value, fontsize=7.5, color=INK, va="top", weight="bold")
    y -= 3 * 0.016 + 0.004
    fig.add_artist(_rule(y))
    return y


def _insufficiency(data: ReportData) -> str:
    reasons = []
    if data.stats.cgm_active_pct < MIN_COVERAGE_PCT:
        reasons.append(f"CGM active {pct_text(data.stats.cgm_active_pct)} (needs ≥ {MIN_COVERAGE_PCT:.0f} %)")
    if data.period.days < MIN_DAYS:
        reasons.append(f"period of {data.period.days} days (needs ≥ {MIN_DAYS})")
    return (
        "NOT ENOUGH DATA: " + "; ".join(reasons) + ".\nThese figures may not represent the person's glucose."
    )


def _rule(y: float) -> Line2D:
    return Line2D([0.06, 0.94], [y, y], color=MUTED, linewidth=0.5)


def _section(fig: Figure, y: float, title: str, *, x: float) -> None:
    fig.text(x, y, title.upper(), fontsize=8.5, weight="bold", color=INK, va="top")


def _statistics(fig: Figure, data: ReportData, units: str, top: float) -> None:
    stats = data.stats
    cv = stats.cv_pct
    rows: list[tuple[str, str, str]] = [
        ("Mean glucose", f"{glucose_text(stats.mean_mg_dl, units)} {units}", ""),
        ("Glucose Management Indicator (GMI)", pct_text(stats.gmi_pct), ""),
        (
            "Glucose variability (CV)",
            "—" if cv is None else pct_text(cv),
            "" if cv is None else _met(cv <= 36.0, "≤ 36 %"),
        ),
        ("Glycemia Risk Index (GRI)", f"{stats.gri:.1f} (zone {stats.gri_zone})", "zones A (best) to E"),
        (
            "Hypoglycaemia episodes, level 1",
            f"{data.hypo_episodes_l1}",
            f"< {glucose_text(70, units)}, ≥ 15 min",
        ),
        (
            "Hypoglycaemia episodes, level 2",
            f"{data.hypo_episodes_l2}",
            f"< {glucose_text(54, units)}, ≥ 15 min",
        ),
    ]
    lo, lo2, hi, hi2 = (glucose_text(v, units) for v in (70, 54, 180, 250))
    targets: list[tuple[str, str, str]] = [
        (f"Time in range {lo}–{hi}", pct_text(stats.in_range_pct), _met(stats.in_range_pct > 70, "> 70 %")),
        (f"Time below {lo}", pct_text(stats.below_range_pct), _met(stats.below_range_pct < 4, "< 4 %")),
        (f"Time below {lo2}", pct_text(stats.very_low_pct), _met(stats.very_low_pct < 1, "< 1 %")),
        (f"Time above {hi}", pct_text(stats.above_range_pct), _met(stats.above_range_pct < 25, "< 25 %")),
        (f"Time above {hi2}", pct_text(stats.very_high_pct), _met(stats.very_high_pct < 5, "< 5 %")),
    ]
    step = 0.0165
    y = top
    for label, value, target in rows:
        _stat_row(fig, y, label, value, target)
        y -= step
    y -= 0.006
    fig.text(
        0.06, y, "Targets (% of readings, consensus 2019)", fontsize=7, color=MUTED, va="top", style="italic"
    )
    fig.text(VALUE_X, y, "yours", fontsize=7, color=MUTED, va="top", style="italic")
    fig.text(TARGET_X, y, "target", fontsize=7, color=MUTED, va="top", style="italic")
    y -= step
    for label, value, target in targets:
        _stat_row(fig, y, label, value, target)
        y -= step


def _met(met: bool, target: str) -> str:
    return f"{target}  {'✓ met' if met else '✗ not met'}"


def _stat_row(fig: Figure, y: float, label: str, value: str, target: str) -> None:
    fig.text(0.06, y, label, fontsize=7.5, color=INK, va="top")
    fig.text(VALUE_X, y, value, fontsize=7.5, color=INK, va="top", weight="bold")
    if target:
        fig.text(TARGET_X, y, target, fontsize=7, color=MUTED, va="top")


def _time_in_ranges(fig: Figure, data: ReportData, units: str, top: float) -> None:
    stats = data.stats
    shares = {
        "very_high": stats.very_high_pct,
        "high": stats.high_pct,
        "in_range": stats.in_range_pct,
        "low": stats.low_pct,
        "very_low": stats.very_low_pct,
    }
    ax = fig.add_axes((0.61, top - 0.30, 0.05, 0.255))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.set_axis_off()
    bottom = 0.0
    middles: dict[str, float] = {}
    for row in reversed(BAND_ROWS):
        share = shares[row.key]
        ax.bar(
            0.5,
            share,
            bottom=bottom,
            width=1.0,
            color=BAND_COLOURS[row.key],
            edgecolor="white",
            linewidth=0.8,
        )
        middles[row.key] = bottom + share / 2
        bottom += share
    # Labels at even heights, each tied to its segment by a thin line: a 0.3 % band still reads.
    for i, row in enumerate(BAND_ROWS):
        label_y = 92 - i * 21
        ax.annotate(
            "",
            xy=(1.0, middles[row.key]),
            xytext=(1.6, label_y),
            arrowprops={"arrowstyle": "-", "color": MUTED, "linewidth": 0.5},
            annotation_clip=False,
        )
        share = shares[row.key]
        ax.text(
            1.7,
            label_y + 2.5,
            f"{row.name}  {row.range_text(units)} {units}",
            fontsize=7,
            color=INK,
            va="center",
        )
        ax.text(
            1.7,
            label_y - 3.5,
            f"{pct_text(share)}  ({duration_text(share)} per day)",
            fontsize=7.5,
            weight="bold",
            color=INK,
            va="center",
        )


def _glucose_axis(ax: Axes, units: str, *, labels: bool = True, top: float = 350) -> None:
    ax.set_ylim(0, top)
    ticks = [t for t in THRESHOLDS_MG if t <= top]
    ax.set_yticks(ticks)
    if not labels:
        ax.set_yticklabels([])
    else:
        ax.set_yticklabels([tick_text(t, units) for t in ticks])


def _hours_axis(ax: Axes, *, labels: bool = True) -> None:
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xticklabels([f"{h:02d}:00" for h in range(0, 25, 3)] if labels else [])


def _target_band(ax: Axes, *, lines: bool = True) -> None:
    ax.axhspan(70, 180, color=TARGET_FILL, zorder=0, linewidth=0)
    if lines:
        for level in (70, 180):
            ax.axhline(level, color=TARGET_LINE, linewidth=1.0, zorder=1)
        for level in (54, 250):
            ax.axhline(level, color=MUTED, linewidth=0.7, linestyle=(0, (4, 2)), zorder=1)


def _agp(ax: Axes, data: ReportData, units: str) -> None:
    slots = 1440 // AGP_SLOT_MINUTES
    grid = np.full((slots + 1, 5), np.nan)
    for slot in data.agp:
        grid[slot.minute // AGP_SLOT_MINUTES] = (slot.p05, slot.p25, slot.p50, slot.p75, slot.p95)
    grid[slots] = grid[0]  # midnight closes the day
    hours = np.arange(slots + 1) * AGP_SLOT_MINUTES / 60
    top = max(350.0, float(np.nanmax(grid)) + 20) if not np.all(np.isnan(grid)) else 350.0
    _target_band(ax)
    ax.fill_between(hours, grid[:, 0], grid[:, 4], color=OUTER_BAND, linewidth=0, zorder=2, label="5–95 %")
    ax.fill_between(hours, grid[:, 1], grid[:, 3], color=INNER_BAND, linewidth=0, zorder=3, label="25–75 %")
    ax.plot(hours, grid[:, 2], color=MEDIAN_LINE, linewidth=1.8, zorder=4, label="median")
    ax.plot(hours, grid[:, 0], color=INNER_BAND, linewidth=0.6, linestyle=(0, (2, 1.5)), zorder=3)
    ax.plot(hours, grid[:, 4], color=INNER_BAND, linewidth=0.6, linestyle=(0, (2, 1.5)), zorder=3)
    _hours_axis(ax)
    _glucose_axis(ax, units, top=top)
    ax.set_ylabel(units, fontsize=7, color=MUTED)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    # Each curve named at its right end, as the AGP report does, spread apart where they crowd.
    last = grid[slots]
    if not np.any(np.isnan(last)):
        spacing = top / 16
        placed: list[float] = []
        for value in last:
            placed.append(max(float(value), placed[-1] + spacing) if placed else float(value))
        for value, text in zip(placed, ("5 %", "25 %", "50 %", "75 %", "95 %"), strict=True):
            ax.text(24.3, value, text, fontsize=6.5, color=INK, va="center", clip_on=False)
    ax.legend(
        loc="upper right",
        fontsize=6.5,
        ncols=3,
        frameon=True,
        facecolor="white",
        edgecolor="white",
        framealpha=0.9,
    )


def _daily_profiles(fig: Figure, data: ReportData, units: str, top: float) -> None:
    """Seven days to a row, each row one axes with the days side by side (24 h apart on its x axis):
    a panel per day as the AGP report draws them, at a seventh of the axes' cost."""
    by_day = {p.day: p for p in data.profiles}
    days = data.period.dates()[-PROFILE_DAYS:]
    columns = 7
    height, gap = 0.085, 0.03
    for row in range(0, len(days), columns):
        line = days[row : row + columns]
        ax = fig.add_axes((0.09, top - (row // columns + 1) * height - row // columns * gap, 0.83, height))
        _profile_row(ax, [(day, by_day.get(day)) for day in line], units, columns)


def _profile_row(ax: Axes, days: list[tuple[date, DayProfile | None]], units: str, columns: int) -> None:
    ax.set_xlim(0, 24 * columns)
    ax.set_ylim(0, 350)
    ax.set_yticks([70, 180, 250], [tick_text(v, units) for v in (70, 180, 250)])
    ax.set_xticks([])
    ax.tick_params(length=0, pad=1)
    ax.axhspan(70, 180, xmax=len(days) / columns, color=TARGET_FILL, zorder=0, linewidth=0)
    # Noon of each day, and the lines between the days: two artists (a tick or an axvline each would be
    # one to create and draw per line).
    ax.vlines([24 * i + 12 for i in range(len(days))], 0, 350, color="#BBBBBB", linewidth=0.4, zorder=1.5)
    ax.vlines([24 * i for i in range(1, len(days))], 0, 350, color=MUTED, linewidth=0.6)
    # The row's traces are one line, one fill per band and one set of markers (a NaN between days breaks
    # them): four artists to create and draw instead of four a day.
    traces: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (day, profile) in enumerate(days):
        start = 24 * i
        ax.text(start + 12, 362, f"{day:%a %d %b}", ha="center", va="bottom", fontsize=6.5, color=INK)
        if profile is None or not profile.minutes:
            ax.text(start + 12, 175, "no data", ha="center", va="center", fontsize=6, color=MUTED)
            continue
        hours, values = _broken_trace(profile)
        traces += [(hours + start, values), (np.array([np.nan]), np.array([np.nan]))]
    if traces:
        hours = np.concatenate([h for h, _ in traces])
        values = np.concatenate([v for _, v in traces])
        clipped = np.clip(values, 0, 350)
        high, low = BAND_COLOURS["high"], BAND_COLOURS["low"]
        ax.fill_between(hours, clipped, 180, where=clipped > 180, color=high, linewidth=0, interpolate=True)
        ax.fill_between(hours, clipped, 70, where=clipped < 70, color=low, linewidth=0, interpolate=True)
        ax.plot(hours, clipped, color=INK, linewidth=0.5)
        lows = values < 54
        if np.any(lows):
            very_low = BAND_COLOURS["very_low"]
            ax.plot(hours[lows], clipped[lows], linestyle="none", marker="v", markersize=2, color=very_low)
    if len(days) < columns:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.axvline(24 * len(days), color=MUTED, linewidth=0.6)


def _broken_trace(profile: DayProfile) -> tuple[np.ndarray, np.ndarray]:
    """Hours and mg/dL with NaN where readings are more than GAP_MINUTES apart, so the line breaks there."""
    minutes = np.asarray(profile.minutes, dtype=float)
    values = np.asarray(profile.mg_dl, dtype=float)
    breaks = np.nonzero(np.diff(minutes) > GAP_MINUTES)[0] + 1
    minutes = np.insert(minutes, breaks, np.nan)
    values = np.insert(values, breaks, np.nan)
    return minutes / 60, values


def _footer(fig: Figure, data: ReportData) -> None:
    fig.text(
        0.06,
        0.018,
        f"phlo-tui · lake branch {data.branch} · % of readings, {data.stats.readings} readings · "
        "targets: Battelino et al., Diabetes Care 2019 · GRI: Klonoff et al., J Diabetes Sci Technol 2022",
        fontsize=6,
        color=MUTED,
    )


# the treatments page


TABLE_HEADER_HEIGHT, TABLE_ROW_HEIGHT = 0.036, 0.0225
"""Figure fractions of the per-bolus table's header row and of each of its rows."""
TABLE_LINE = "#999999"


def _table(
    fig: Figure, header: list[str], rows: list[list[str]], *, left: float, top: float, widths: list[float]
) -> None:
    """A table drawn as one grid of lines and a text per cell (matplotlib.table draws a patch and lays out
    each cell again: a quarter of the page's drawing time): a grey header row, the last row in bold."""
    edges = [left]
    for width in widths:
        edges.append(edges[-1] + width)
    bottom = top - TABLE_HEADER_HEIGHT - len(rows) * TABLE_ROW_HEIGHT
    fig.add_artist(
        Rectangle(
            (left, top - TABLE_HEADER_HEIGHT),
            edges[-1] - left,
            TABLE_HEADER_HEIGHT,
            transform=fig.transFigure,
            facecolor="#EEEEEE",
            linewidth=0,
        )
    )
    levels = [top] + [top - TABLE_HEADER_HEIGHT - i * TABLE_ROW_HEIGHT for i in range(len(rows) + 1)]
    segments = [[(left, y), (edges[-1], y)] for y in levels]
    segments += [[(x, top), (x, bottom)] for x in edges]
    fig.add_artist(LineCollection(segments, transform=fig.transFigure, colors=TABLE_LINE, linewidths=0.4))
    middles = [(a + b) / 2 for a, b in pairwise(edges)]
    for x, text in zip(middles, header, strict=True):
        fig.text(
            x,
            top - TABLE_HEADER_HEIGHT / 2,
            text,
            ha="center",
            va="center",
            fontsize=7,
            weight="bold",
            color=INK,
        )
    for i, row in enumerate(rows):
        y = top - TABLE_HEADER_HEIGHT - (i + 0.5) * TABLE_ROW_HEIGHT
        weight = "bold" if i == len(rows) - 1 else "normal"
        for x, text in zip(middles, row, strict=True):
            fig.text(x, y, text, ha="center", va="center", fontsize=7, weight=weight, color=INK)


@dataclass(frozen=True)
class BolusGroup:
    """The boluses given in one part of the day (local time), summarised."""

    name: str
    boluses: tuple[BolusOutcome, ...]

    def row(self, units: str) -> list[str]:
        b = self.boluses
        if not b:
            return [self.name, "0", "–", "–", "–", "–", "–", "–", "–"]

        def avg(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return mean(known) if known else None

        def glucose(value: float | None) -> str:
            return "–" if value is None else glucose_text(value, units)

        insulin = avg([x.insulin_units for x in b])
        carbs = avg([x.carbs_g for x in b])
        drop = avg([x.reduction for x in b])
        to_low = [x.minutes_to_min for x in b if x.minutes_to_min is not None]
        hypos = sum(1 for x in b if x.hypo_within_4h)
        return [
            self.name,
            str(len(b)),
            "–" if insulin is None else f"{insulin:.1f}",
            "–" if carbs is None else f"{carbs:.0f}",
            glucose(avg([x.glucose_before for x in b])),
            glucose(avg([x.glucose_after for x in b])),
            "–" if drop is None else (f"{drop / MG_PER_MMOL:+.1f}" if units == "mmol/L" else f"{drop:+.0f}"),
            "–" if not to_low else f"{median(to_low):.0f}",
            f"{hypos} ({100 * hypos / len(b):.0f} %)",
        ]


PARTS_OF_DAY = (
    ("Night 00–06", 0, 6),
    ("Morning 06–11", 6, 11),
    ("Afternoon 11–17", 11, 17),
    ("Evening 17–24", 17, 24),
)


def bolus_groups(boluses: tuple[BolusOutcome, ...]) -> list[BolusGroup]:
    groups = [
        BolusGroup(name, tuple(b for b in boluses if start <= b.at.hour < end))
        for name, start, end in PARTS_OF_DAY
    ]
    return [*groups, BolusGroup("All boluses", boluses)]


def _treatments_page(data: ReportData, units: str, paper: str, name: str | None) -> Figure:
    fig = Figure(figsize=PAPER_INCHES[paper], facecolor="white")
    top = _header(fig, data, units, name, "Treatments: insulin, carbohydrates and boluses")
    treatments = {t.day: t for t in data.treatments}
    days = data.period.dates()
    insulin = [treatments[d].insulin_units if d in treatments else 0.0 for d in days]
    carbs = [treatments[d].carbs_g if d in treatments else 0.0 for d in days]
    total_insulin, total_carbs = sum(insulin), sum(carbs)
    _section(fig, top - 0.012, "Insulin and carbohydrates per day", x=0.06)
    fig.text(
        0.06,
        top - 0.03,
        f"Bolus insulin {total_insulin:.1f} U over {len(days)} days, {total_insulin / len(days):.1f} U per day · "
        f"carbohydrates {total_carbs:.0f} g, {total_carbs / len(days):.0f} g per day (logged treatments)",
        fontsize=7,
        color=MUTED,
        va="top",
    )
    for i, (values, label, colour) in enumerate(
        ((insulin, "bolus insulin (U)", MEDIAN_LINE), (carbs, "carbohydrates (g)", OUTER_BAND))
    ):
        ax = fig.add_axes((0.09, top - 0.22 - i * 0.2, 0.85, 0.15))
        ax.bar(range(len(days)), values, color=colour, edgecolor=INK, linewidth=0.3, width=0.8)
        ax.set_ylabel(label, fontsize=7, color=MUTED)
        step = max(1, len(days) // 15)
        ax.set_xticks(range(0, len(days), step))
        ax.set_xticklabels([f"{d:%d %b}" for d in days[::step]], rotation=0)
        ax.set_xlim(-0.6, len(days) - 0.4)
        ax.grid(axis="y", color="#CCCCCC", linewidth=0.4)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    table_top = top - 0.47
    _section(fig, table_top, "Per-bolus effectiveness", x=0.06)
    fig.text(
        0.06,
        table_top - 0.018,
        f"Each bolus of the period, grouped by local time of day; glucose in {units}. Before: mean of the hour "
        "before the bolus. After: mean 2–3 h after. Drop: before − after.\nLowest: minutes from the bolus to "
        "the lowest reading within 4 h (median). Hypo: a reading below "
        f"{glucose_text(70, units)} within 4 h.",
        fontsize=6.5,
        color=MUTED,
        va="top",
    )
    header = [
        "Time of day",
        "Boluses",
        "Mean\ninsulin U",
        "Mean\ncarbs g",
        "Before",
        "After\n2–3 h",
        "Drop",
        "Minutes\nto lowest",
        "Hypo\nwithin 4 h",
    ]
    rows = [g.row(units) for g in bolus_groups(data.boluses)]
    widths = [0.151, 0.071, 0.08, 0.08, 0.08, 0.08, 0.08, 0.089, 0.107]
    _table(fig, header, rows, left=0.091, top=table_top - 0.054, widths=widths)
    _footer(fig, data)
    return fig
