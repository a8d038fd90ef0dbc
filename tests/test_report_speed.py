"""What `phlo-tui report`'s speed-ups promise, on real processes and real PDFs: the forked child that reads
the period (engine.outputs.report.forked) hands back its value or its error, and is ended when not needed; the PDF
backend's fontTools.subset is not run for the report's Type 3 fonts, yet still works when used; the PDF
backend's text layout without glyph loads writes the same file; the one-collection bars and fills
(engine.outputs.report.artists) draw the pixels of matplotlib's bar and fill_between. (The seconds are in
bench/report.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.errors import PhloError
from engine.outputs.report.artists import bars, fill_beyond
from engine.outputs.report.forked import ForkedCall

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


class TwoPartError(Exception):
    """Pickles, but does not unpickle: its __init__ wants two arguments and its args hold one."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} at {where}")


def test_the_childs_value_comes_back() -> None:
    call = ForkedCall(lambda: (os.getpid(), {"readings": [1, 2, 3]}))
    pid, value = call.result()
    assert pid != os.getpid()
    assert value == {"readings": [1, 2, 3]}


def _no_readings() -> None:
    raise PhloError("no readings from 2020-01-01 to 2020-01-20 on main", "choose another period")


def test_the_childs_error_is_raised_here_with_its_hint() -> None:
    with pytest.raises(PhloError) as raised:
        ForkedCall(_no_readings).result()
    assert raised.value.message == "no readings from 2020-01-01 to 2020-01-20 on main"
    assert raised.value.hint == "choose another period"


def _two_part() -> None:
    raise TwoPartError("a bad page", "row 3")


def test_an_error_that_cannot_come_back_comes_back_as_its_text() -> None:
    with pytest.raises(RuntimeError, match="TwoPartError: a bad page at row 3"):
        ForkedCall(_two_part).result()


def test_cancel_ends_the_child_at_once() -> None:
    call = ForkedCall(lambda: time.sleep(60))
    pid = call._pid
    assert pid is not None
    started = time.monotonic()
    call.cancel()
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):  # ended and reaped
        os.kill(pid, 0)
    with pytest.raises(RuntimeError, match="already read or cancelled"):
        call.result()
    call.cancel()  # a second time does nothing


SCRIPT = """
import sys
import matplotlib
from matplotlib.figure import Figure
from engine.outputs.report.render import write_pdf

def page():
    fig = Figure(figsize=(4, 3))
    fig.text(0.1, 0.5, "Time in range 70–180: 66.6 % ✓ met")
    return fig

write_pdf([page()], sys.argv[1], title="t")
print(type(sys.modules["fontTools.subset"]).__name__)
with matplotlib.rc_context({"pdf.fonttype": 42}):  # TrueType: the deferred module runs now
    page().savefig(sys.argv[2], format="pdf")
print(type(sys.modules["fontTools.subset"]).__name__)
"""


def test_the_pdf_leaves_fonttools_subset_unrun_and_truetype_still_works(tmp_path: Path) -> None:
    type3, truetype = tmp_path / "type3.pdf", tmp_path / "truetype.pdf"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(type3), str(truetype)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.split() == ["_LazyModule", "module"], result.stdout + result.stderr
    for path, kind in ((type3, "Type 3"), (truetype, "CID TrueType")):
        fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
        rows = fonts.splitlines()[2:]
        assert rows and all(kind in row and " yes yes yes " in row for row in rows), fonts
    text = subprocess.run(
        ["pdftotext", str(truetype), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "66.6 % ✓ met" in text


LAYOUT_SCRIPT = """
import sys
from matplotlib.backends import backend_pdf
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from engine.outputs.report.render import write_pdf
from engine.outputs.report.style import report_style

def page():
    fig = Figure(figsize=(4, 3))
    fig.text(0.1, 0.8, "AVAWAY To Ty: 66.6 % ✓ met, ≤ 36 %, 3.9–10.0 mmol/L", weight="bold")
    fig.text(0.1, 0.5, "Hypoglycaemia episodes\\nlevel 2 ✗ not met", ha="center", rotation=10)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.3))
    ax.set_xticks([0, 0.5, 1], ["00:00", "12:00", "24:00"])
    return fig

plain = backend_pdf._text_helpers
with report_style(), PdfPages(sys.argv[1], metadata={"CreationDate": None}) as pdf:
    pdf.savefig(page())
write_pdf([page()], sys.argv[2], title="t")
print(backend_pdf._text_helpers is not plain)
with report_style(), PdfPages(sys.argv[3], metadata={"CreationDate": None}) as pdf:
    pdf.savefig(page())
"""


def test_the_pdf_backends_layout_without_glyph_loads_writes_the_same_file(tmp_path: Path) -> None:
    """write_pdf gives matplotlib's PDF backend a text layout that skips loading each glyph: a PDF of the
    same page, text with kerning, non-Latin-1 characters, bold, two lines and a rotation, is the same byte
    for byte with matplotlib's own layout and with the report's."""
    plain, report, faster = tmp_path / "plain.pdf", tmp_path / "report.pdf", tmp_path / "faster.pdf"
    result = subprocess.run(
        [sys.executable, "-c", LAYOUT_SCRIPT, str(plain), str(report), str(faster)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    import matplotlib.ft2font

    assert result.stdout.split() == [str(hasattr(matplotlib.ft2font.FT2Font, "_layout"))], result.stderr
    assert faster.read_bytes() == plain.read_bytes()
    text = subprocess.run(["pdftotext", str(report), "-"], capture_output=True, text=True, check=True).stdout
    assert "AVAWAY To Ty: 66.6 % ✓ met, ≤ 36 %, 3.9–10.0" in text


def _pixels(draw: Callable[[Axes], None]) -> tuple[np.ndarray, tuple[float, ...], list[float]]:
    """The RGBA pixels of an axes drawn by `draw`, with its y limits and ticks."""
    fig = Figure(figsize=(4, 2), dpi=100)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    draw(ax)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy(), ax.get_ylim(), list(ax.get_yticks())


def test_the_bars_collection_draws_what_axes_bar_draws() -> None:
    heights = np.array([3.5, 0.0, 12.25, 7.0, 0.4, 9.9])
    theirs = _pixels(
        lambda ax: ax.bar(range(6), heights, color="#4F7FBF", edgecolor="#111111", linewidth=0.3, width=0.8)
    )
    ours = _pixels(
        lambda ax: bars(
            ax, np.arange(6), heights, width=0.8, colours="#4F7FBF", edgecolor="#111111", linewidth=0.3
        )
    )
    assert ours[1:] == theirs[1:]  # the autoscaled y axis: from 0, with the same ticks
    assert np.array_equal(ours[0], theirs[0])


def test_the_fill_beyond_a_level_draws_what_fill_between_draws() -> None:
    """A trace crossing 180 between readings, touching it, starting above it, broken by NaN (a gap)."""
    x = np.arange(40, dtype=float)
    y = 180 + 60 * np.sin(x / 3) + np.where(x % 7 == 0, 0.0, 5.0)
    y[[12, 13, 27]] = np.nan
    y[20] = 180.0

    def theirs(ax: Axes) -> None:
        ax.set_xlim(0, 40)
        ax.set_ylim(0, 350)
        ax.fill_between(x, y, 180, where=y > 180, color="#F6D23C", linewidth=0, interpolate=True)
        ax.fill_between(x, y, 150, where=y < 150, color="#EF6C5E", linewidth=0, interpolate=True)

    def ours(ax: Axes) -> None:
        ax.set_xlim(0, 40)
        ax.set_ylim(0, 350)
        fill_beyond(ax, x, y, 180, above=True, colour="#F6D23C")
        fill_beyond(ax, x, y, 150, above=False, colour="#EF6C5E")

    assert np.array_equal(_pixels(ours)[0], _pixels(theirs)[0])
