"""The report's second page, when the period has treatments: insulin and carbohydrates per day, and the
per-bolus effectiveness table."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from statistics import mean, median

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from engine.api.treatment_reads import BolusOutcome
from engine.outputs.report.artists import bars
from engine.outputs.report.data import ReportData
from engine.outputs.report.sections import footer, header, section
from engine.outputs.report.style import (
    INK,
    MEDIAN_LINE,
    MG_PER_MMOL,
    MUTED,
    OUTER_BAND,
    PAPER_INCHES,
    glucose_text,
)

TABLE_HEADER_HEIGHT, TABLE_ROW_HEIGHT = 0.036, 0.0225
"""Figure fractions of the per-bolus table's header row and of each of its rows."""
TABLE_LINE = "#999999"


def table(
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


def treatments_page(data: ReportData, units: str, paper: str, name: str | None) -> Figure:
    fig = Figure(figsize=PAPER_INCHES[paper], facecolor="white")
    top = header(fig, data, units, name, "Treatments: insulin, carbohydrates and boluses")
    treatments = {t.day: t for t in data.treatments}
    days = data.period.dates()
    insulin = [treatments[d].insulin_units if d in treatments else 0.0 for d in days]
    carbs = [treatments[d].carbs_g if d in treatments else 0.0 for d in days]
    total_insulin, total_carbs = sum(insulin), sum(carbs)
    section(fig, top - 0.012, "Insulin and carbohydrates per day", x=0.06)
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
        bars(
            ax,
            np.arange(len(days)),
            np.array(values),
            width=0.8,
            colours=colour,
            edgecolor=INK,
            linewidth=0.3,
        )
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
    section(fig, table_top, "Per-bolus effectiveness", x=0.06)
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
    headings = [
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
    table(fig, headings, rows, left=0.091, top=table_top - 0.054, widths=widths)
    footer(fig, data)
    return fig
