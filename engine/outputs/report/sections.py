"""The AGP page's text sections, drawn on a matplotlib figure: the header (with the not-enough-data
banner), the glucose statistics and targets, the time-in-ranges bar and the footer."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from engine.outputs.report.artists import bars
from engine.outputs.report.data import MIN_COVERAGE_PCT, MIN_DAYS, ReportData
from engine.outputs.report.style import (
    BAND_COLOURS,
    BAND_ROWS,
    INK,
    MUTED,
    duration_text,
    glucose_text,
    pct_text,
)

HEADER_BOTTOM = 0.935 - 3 * 0.016 - 0.004
"""Where the header ends without the banner: the page below is laid out from there."""
VALUE_X, TARGET_X = 0.345, 0.45
"""Where the statistics' values and targets start (figure fraction); labels start at 0.06."""


def header(fig: Figure, data: ReportData, units: str, name: str | None, title: str) -> float:
    """Title, the not-enough-data banner, then the period's facts; returns where the page goes on."""
    fig.text(0.06, 0.968, title, fontsize=13, weight="bold", color=INK, va="top")
    y = 0.935
    if not data.sufficient:
        fig.text(
            0.5,
            y,
            insufficiency(data),
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
    fig.add_artist(rule(y))
    return y


def insufficiency(data: ReportData) -> str:
    reasons = []
    if data.stats.cgm_active_pct < MIN_COVERAGE_PCT:
        reasons.append(f"CGM active {pct_text(data.stats.cgm_active_pct)} (needs ≥ {MIN_COVERAGE_PCT:.0f} %)")
    if data.period.days < MIN_DAYS:
        reasons.append(f"period of {data.period.days} days (needs ≥ {MIN_DAYS})")
    return (
        "NOT ENOUGH DATA: " + "; ".join(reasons) + ".\nThese figures may not represent the person's glucose."
    )


def rule(y: float) -> Line2D:
    return Line2D([0.06, 0.94], [y, y], color=MUTED, linewidth=0.5)


def section(fig: Figure, y: float, title: str, *, x: float) -> None:
    fig.text(x, y, title.upper(), fontsize=8.5, weight="bold", color=INK, va="top")


def statistics(fig: Figure, data: ReportData, units: str, top: float) -> None:
    stats = data.stats
    cv = stats.cv_pct
    rows: list[tuple[str, str, str]] = [
        ("Mean glucose", f"{glucose_text(stats.mean_mg_dl, units)} {units}", ""),
        ("Glucose Management Indicator (GMI)", pct_text(stats.gmi_pct), ""),
        (
            "Glucose variability (CV)",
            "—" if cv is None else pct_text(cv),
            "" if cv is None else met(cv <= 36.0, "≤ 36 %"),
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
        (f"Time in range {lo}–{hi}", pct_text(stats.in_range_pct), met(stats.in_range_pct > 70, "> 70 %")),
        (f"Time below {lo}", pct_text(stats.below_range_pct), met(stats.below_range_pct < 4, "< 4 %")),
        (f"Time below {lo2}", pct_text(stats.very_low_pct), met(stats.very_low_pct < 1, "< 1 %")),
        (f"Time above {hi}", pct_text(stats.above_range_pct), met(stats.above_range_pct < 25, "< 25 %")),
        (f"Time above {hi2}", pct_text(stats.very_high_pct), met(stats.very_high_pct < 5, "< 5 %")),
    ]
    step = 0.0165
    y = top
    for label, value, target in rows:
        stat_row(fig, y, label, value, target)
        y -= step
    y -= 0.006
    fig.text(
        0.06, y, "Targets (% of readings, consensus 2019)", fontsize=7, color=MUTED, va="top", style="italic"
    )
    fig.text(VALUE_X, y, "yours", fontsize=7, color=MUTED, va="top", style="italic")
    fig.text(TARGET_X, y, "target", fontsize=7, color=MUTED, va="top", style="italic")
    y -= step
    for label, value, target in targets:
        stat_row(fig, y, label, value, target)
        y -= step


def met(met: bool, target: str) -> str:
    return f"{target}  {'✓ met' if met else '✗ not met'}"


def stat_row(fig: Figure, y: float, label: str, value: str, target: str) -> None:
    fig.text(0.06, y, label, fontsize=7.5, color=INK, va="top")
    fig.text(VALUE_X, y, value, fontsize=7.5, color=INK, va="top", weight="bold")
    if target:
        fig.text(TARGET_X, y, target, fontsize=7, color=MUTED, va="top")


def time_in_ranges(fig: Figure, data: ReportData, units: str, top: float) -> None:
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
    # Stacked from the bottom: very low first.
    stack = list(reversed(BAND_ROWS))
    heights = np.array([shares[row.key] for row in stack])
    bottoms = np.concatenate([[0.0], np.cumsum(heights)[:-1]])
    colours = [BAND_COLOURS[row.key] for row in stack]
    bars(
        ax,
        np.full(len(stack), 0.5),
        heights,
        bottoms=bottoms,
        width=1.0,
        colours=colours,
        edgecolor="white",
        linewidth=0.8,
    )
    middles = {row.key: float(b + h / 2) for row, b, h in zip(stack, bottoms, heights, strict=True)}
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


def footer(fig: Figure, data: ReportData) -> None:
    fig.text(
        0.06,
        0.018,
        f"phlo-tui · lake branch {data.branch} · % of readings, {data.stats.readings} readings · "
        "targets: Battelino et al., Diabetes Care 2019 · GRI: Klonoff et al., J Diabetes Sci Technol 2022",
        fontsize=6,
        color=MUTED,
    )
