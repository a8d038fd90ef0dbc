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
from typing import Any

from matplotlib.figure import Figure

from engine.outputs.report.curves import agp, daily_profiles
from engine.outputs.report.data import AGP_SLOT_MINUTES, AGP_WINDOW_MINUTES, PROFILE_DAYS, ReportData
from engine.outputs.report.sections import (
    HEADER_BOTTOM,
    footer,
    header,
    section,
    statistics,
    time_in_ranges,
)
from engine.outputs.report.style import MUTED, PAPER_INCHES, PNG_DPI, report_style
from engine.outputs.report.treatments_page import treatments_page

# matplotlib subsets the embedded fonts with fontTools, which logs every table it prunes at INFO (`-v`).
logging.getLogger("fontTools").setLevel(logging.WARNING)


def render_pages(data: ReportData, units: str, paper: str, name: str | None) -> list[Figure]:
    """The report's pages as figures: the AGP page, then the treatments page when there are treatments."""
    with report_style():
        pages = [_agp_page(data, units, paper, name)]
        if data.has_treatments:
            pages.append(treatments_page(data, units, paper, name))
    return pages


def write_pdf(pages: list[Figure], path: str, title: str) -> None:
    _defer_import("fontTools.subset")
    from matplotlib.backends.backend_pdf import PdfPages

    _layout_glyphs_unloaded()

    with report_style(), PdfPages(path, metadata={"Title": title, "Creator": "phlo-tui"}) as pdf:
        for page in pages:
            pdf.savefig(page)


def write_png(page: Figure, path: str) -> None:
    with report_style():
        page.savefig(path, format="png", dpi=PNG_DPI, facecolor="white")


def _layout_glyphs_unloaded() -> None:
    """matplotlib's text layout (`_text_helpers.layout`) loads each glyph's outline into the font as it goes,
    for the backends that then draw it; the PDF backend reads only each glyph's index and position from it.
    Give the PDF backend the layout without the loads: the same file byte for byte, with about 0.1 s less
    of a report's second of drawing (one load per character). Only where the layout is matplotlib 3.11's
    (FT2Font._layout); tests/test_report_speed.py compares the files."""
    from matplotlib import _text_helpers
    from matplotlib.backends import backend_pdf
    from matplotlib.ft2font import FT2Font

    if backend_pdf._text_helpers is not _text_helpers or not hasattr(FT2Font, "_layout"):
        return
    from matplotlib.ft2font import LoadFlags

    class PdfTextLayout:
        """What the PDF backend uses of matplotlib._text_helpers: `layout`, without loading each glyph."""

        @staticmethod
        def layout(string: str, font: Any, *, features: Any = None, language: Any = None) -> Iterator[Any]:
            return iter(font._layout(string, LoadFlags.NO_HINTING, features=features, language=language))

    backend_pdf._text_helpers = PdfTextLayout  # type: ignore[assignment]


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
    top = header(fig, data, units, name, "AGP Report: Continuous Glucose Monitoring")
    section(fig, top - 0.012, "Glucose statistics and targets", x=0.06)
    section(fig, top - 0.012, "Time in ranges", x=0.60)
    statistics(fig, data, units, top - 0.035)
    time_in_ranges(fig, data, units, top)
    agp_top = top - 0.335
    section(fig, agp_top, "Ambulatory Glucose Profile (AGP)", x=0.06)
    smoothing = (
        f"Percentiles of all readings within ±{AGP_WINDOW_MINUTES // 2} min of each "
        f"{AGP_SLOT_MINUTES}-min time of day over the {data.period.days} days; no other smoothing."
    )
    fig.text(0.06, agp_top - 0.017, smoothing, fontsize=6.5, color=MUTED, va="top")
    # The not-enough-data banner pushes the page down: the AGP gives up that height.
    squeeze = HEADER_BOTTOM - top
    agp_height = 0.225 - squeeze
    agp(fig.add_axes((0.09, agp_top - 0.03 - agp_height, 0.80, agp_height)), data, units)
    daily_top = agp_top - 0.065 - agp_height
    shown = min(PROFILE_DAYS, data.period.days)
    title = "Daily glucose profiles"
    if data.period.days > shown:
        title += f" (the last {shown} of the period's {data.period.days} days)"
    section(fig, daily_top, title, x=0.06)
    daily_profiles(fig, data, units, daily_top - 0.025)
    footer(fig, data)
    return fig
