"""The AGP page's plots: the AGP curve (percentile bands by time of day) and the daily glucose profiles."""

from __future__ import annotations

from datetime import date

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine.outputs.report.artists import fill_beyond
from engine.outputs.report.data import AGP_SLOT_MINUTES, PROFILE_DAYS, DayProfile, ReportData
from engine.outputs.report.style import (
    BAND_COLOURS,
    INK,
    INNER_BAND,
    MEDIAN_LINE,
    MUTED,
    OUTER_BAND,
    TARGET_FILL,
    TARGET_LINE,
    THRESHOLDS_MG,
    tick_text,
)

GAP_MINUTES = 15
"""A daily trace is broken where readings are further apart than this."""


def glucose_axis(ax: Axes, units: str, *, labels: bool = True, top: float = 350) -> None:
    ax.set_ylim(0, top)
    ticks = [t for t in THRESHOLDS_MG if t <= top]
    ax.set_yticks(ticks)
    if not labels:
        ax.set_yticklabels([])
    else:
        ax.set_yticklabels([tick_text(t, units) for t in ticks])


def hours_axis(ax: Axes, *, labels: bool = True) -> None:
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xticklabels([f"{h:02d}:00" for h in range(0, 25, 3)] if labels else [])


def target_band(ax: Axes, *, lines: bool = True) -> None:
    ax.axhspan(70, 180, color=TARGET_FILL, zorder=0, linewidth=0)
    if lines:
        for level in (70, 180):
            ax.axhline(level, color=TARGET_LINE, linewidth=1.0, zorder=1)
        for level in (54, 250):
            ax.axhline(level, color=MUTED, linewidth=0.7, linestyle=(0, (4, 2)), zorder=1)


def agp(ax: Axes, data: ReportData, units: str) -> None:
    slots = 1440 // AGP_SLOT_MINUTES
    grid = np.full((slots + 1, 5), np.nan)
    for slot in data.agp:
        grid[slot.minute // AGP_SLOT_MINUTES] = (slot.p05, slot.p25, slot.p50, slot.p75, slot.p95)
    grid[slots] = grid[0]  # midnight closes the day
    hours = np.arange(slots + 1) * AGP_SLOT_MINUTES / 60
    top = max(350.0, float(np.nanmax(grid)) + 20) if not np.all(np.isnan(grid)) else 350.0
    target_band(ax)
    ax.fill_between(hours, grid[:, 0], grid[:, 4], color=OUTER_BAND, linewidth=0, zorder=2, label="5–95 %")
    ax.fill_between(hours, grid[:, 1], grid[:, 3], color=INNER_BAND, linewidth=0, zorder=3, label="25–75 %")
    ax.plot(hours, grid[:, 2], color=MEDIAN_LINE, linewidth=1.8, zorder=4, label="median")
    ax.plot(hours, grid[:, 0], color=INNER_BAND, linewidth=0.6, linestyle=(0, (2, 1.5)), zorder=3)
    ax.plot(hours, grid[:, 4], color=INNER_BAND, linewidth=0.6, linestyle=(0, (2, 1.5)), zorder=3)
    hours_axis(ax)
    glucose_axis(ax, units, top=top)
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


def daily_profiles(fig: Figure, data: ReportData, units: str, top: float) -> None:
    """Seven days to a row, each row one axes with the days side by side (24 h apart on its x axis):
    a panel per day as the AGP report draws them, at a seventh of the axes' cost."""
    by_day = {p.day: p for p in data.profiles}
    days = data.period.dates()[-PROFILE_DAYS:]
    columns = 7
    height, gap = 0.085, 0.03
    for row in range(0, len(days), columns):
        line = days[row : row + columns]
        ax = fig.add_axes((0.09, top - (row // columns + 1) * height - row // columns * gap, 0.83, height))
        profile_row(ax, [(day, by_day.get(day)) for day in line], units, columns)


def profile_row(ax: Axes, days: list[tuple[date, DayProfile | None]], units: str, columns: int) -> None:
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
        hours, values = broken_trace(profile)
        traces += [(hours + start, values), (np.array([np.nan]), np.array([np.nan]))]
    if traces:
        hours = np.concatenate([h for h, _ in traces])
        values = np.concatenate([v for _, v in traces])
        clipped = np.clip(values, 0, 350)
        high, low = BAND_COLOURS["high"], BAND_COLOURS["low"]
        fill_beyond(ax, hours, clipped, 180, above=True, colour=high)
        fill_beyond(ax, hours, clipped, 70, above=False, colour=low)
        ax.plot(hours, clipped, color=INK, linewidth=0.5)
        lows = values < 54
        if np.any(lows):
            very_low = BAND_COLOURS["very_low"]
            ax.plot(hours[lows], clipped[lows], linestyle="none", marker="v", markersize=2, color=very_low)
    if len(days) < columns:
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.axvline(24 * len(days), color=MUTED, linewidth=0.6)


def broken_trace(profile: DayProfile) -> tuple[np.ndarray, np.ndarray]:
    """Hours and mg/dL with NaN where readings are more than GAP_MINUTES apart, so the line breaks there."""
    minutes = np.asarray(profile.minutes, dtype=float)
    values = np.asarray(profile.mg_dl, dtype=float)
    breaks = np.nonzero(np.diff(minutes) > GAP_MINUTES)[0] + 1
    minutes = np.insert(minutes, breaks, np.nan)
    values = np.insert(values, breaks, np.nan)
    return minutes / 60, values
