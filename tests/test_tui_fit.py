"""What the dashboard draws fits the terminal and its keys can be found (issue 14): the Overview's band
legend stays one line at 80 columns in both units, every page's footer shows ? Help and q Quit, the help
lists the app's keys first, and the command palette finds every page's commands."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.color import Color
from rich.text import Text
from textual.app import App, ComposeResult
from textual.command import CommandList
from textual.containers import Horizontal
from textual.pilot import Pilot
from textual.widgets import DataTable, Footer, Static
from textual.widgets._footer import FooterKey

import phlo_tui
from engine.api.facade import Engine
from engine.api.pages import BandShares, ChartsSnapshot, DayMetrics, HourProfile, OverviewSnapshot
from engine.api.sufficiency import Sufficiency
from engine.config import load_settings
from phlo_tui.app import PhloApp
from phlo_tui.screens.confirm_promote import ConfirmPromote
from phlo_tui.screens.help import HelpScreen
from phlo_tui.widgets.band_panel import BandPanel
from phlo_tui.widgets.charts_plot import ChartsPlot
from phlo_tui.widgets.glucose import BANDS
from phlo_tui.widgets.hourly_chart import HourlyChart
from phlo_tui.widgets.tir_chart import TirChart
from phlo_tui.widgets.trace_plot import TracePlot, trace_runs
from tests.test_tui import LakeHome, Recorder, dashboard, label_text, promoted, settle, table_rows, unpromoted

__all__ = ["promoted", "unpromoted"]  # module-scoped lakes shared with test_tui

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
APP_CSS = Path(phlo_tui.__file__).parent / "app.tcss"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


class PanelApp(App[None]):
    """The Overview's top row: the 22-column reading beside the band panel, with the app's styles."""

    CSS_PATH = APP_CSS

    def compose(self) -> ComposeResult:
        with Horizontal(id="overview-top"):
            yield Static("6.9 →", id="reading", classes="reading-stand-in")
            yield BandPanel(id="bands")

    def on_mount(self) -> None:
        self.query_one("#reading").styles.width = 22


def snapshot(shares: tuple[float, float, float, float, float]) -> OverviewSnapshot:
    bands = BandShares(
        4000, *shares, mean_mg_dl=160.0, sd_mg_dl=48.0, days=14, gmi_pct=7.14, cv_pct=30.0, gri=100.0
    )
    enough = Sufficiency(4000, 4032.0, 14)
    return OverviewSnapshot(
        NOW, "UTC", "main", today=bands, window=bands, today_data=enough, window_data=enough
    )


# The demo's shares, and the widest: four bands under 10 % (one decimal each) and one at 100.
SHARES = {
    "demo": (0.5, 0.8, 71.0, 22.0, 5.8),
    "widest": (1.5, 2.5, 75.0, 12.0, 9.0),
    "all": (0, 0, 100, 0, 0),
}


@pytest.mark.anyio
@pytest.mark.parametrize("units", ["mg/dL", "mmol/L"])
@pytest.mark.parametrize("shares", SHARES)
@pytest.mark.parametrize("columns", [80, 120])
async def test_the_band_legend_is_one_line(units: str, shares: str, columns: int) -> None:
    app = PanelApp()
    async with app.run_test(size=(columns, 24)) as pilot:
        panel = app.query_one(BandPanel)
        panel.show(snapshot(SHARES[shares]), units)
        await pilot.pause()
        lines = panel.render().plain.splitlines()
        legend = next(line for line in lines if line.startswith("■"))
        assert legend.count("■") == 5
        assert len(legend) <= panel.size.width, f"{legend!r} wraps at {panel.size.width} columns"
        assert lines[lines.index(legend) + 1].startswith("mean ")
        if columns == 120:
            wanted = "■3.9–10.0 " if units == "mmol/L" else "■70–180 "
            assert wanted in legend, "with room to spare the legend spells out the ranges"
        else:
            assert (">13.9 " if units == "mmol/L" else ">250 ") in legend


@pytest.mark.anyio
@pytest.mark.parametrize("page", ["1", "2", "3", "4", "5", "6"])
async def test_every_page_shows_help_and_quit_in_the_footer_at_80_columns(
    promoted: LakeHome, page: str
) -> None:
    async with dashboard(promoted) as (app, pilot, _, _engine):
        await pilot.resize_terminal(80, 24)
        await pilot.press(page)
        if page == "6":
            await pilot.press("escape")  # the query box takes q and ? while it has the focus
        await settle(pilot)
        footer = app.screen.query_one(Footer)
        palette = footer.query_one(".-command-palette", FooterKey)
        for action in ("quit", "help"):
            (key,) = [k for k in footer.query(FooterKey) if k.action == action]
            shown = key.region
            assert shown.width > 0 and shown.right <= palette.region.x, f"{action} is cut: {shown}"
        app.exit()


@pytest.mark.anyio
async def test_help_lists_the_apps_keys_before_textuals(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, _engine):
        await pilot.press("2", "question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        ids = [str(app.screen.query_one(DataTable).get_row_at(i)[2]) for i in range(len(app.screen.rows))]
        assert ids[0] == "charts.next" and "quit" in ids and "" in ids, ids
        first_textual = ids.index("")
        assert all(ids[first_textual:]) is False and not any(ids[first_textual:]), ids
        app.exit()


async def palette_search(pilot: Pilot[None], text: str, wanted: str) -> list[str]:
    """The palette's results for `text`, once one holds `wanted` (they arrive as the search goes)."""
    await pilot.press("ctrl+p")
    await pilot.press(*text)
    results = pilot.app.screen.query_one(CommandList)
    found: list[str] = []
    for _ in range(100):
        await pilot.pause(0.02)
        found = [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]
        if any(wanted in f for f in found):
            break
    return found


@pytest.mark.anyio
async def test_the_palette_finds_promotion_from_any_page(unpromoted: LakeHome) -> None:
    """From the Overview, "prom" finds the Branches page's promotion; choosing it opens that page and,
    once the diff is computed, the confirmation."""
    async with dashboard(unpromoted) as (app, pilot, _, _engine):
        found = await palette_search(pilot, "prom", "Promote dev → main")
        assert found and "Promote dev → main" in found[0], found
        await pilot.press("enter")
        await settle(pilot)
        await settle(pilot)
        assert isinstance(app.screen, ConfirmPromote)
        assert app.current_mode == "branches"
        await pilot.press("n")
        await settle(pilot)
        found = await palette_search(pilot, "units", "mg/dL ↔ mmol/L")
        assert found and "mg/dL ↔ mmol/L" in found[0], found
        app.exit()


@pytest.mark.anyio
async def test_quality_says_error_rows_were_quarantined_beside_gate_ok(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, _engine):
        await pilot.resize_terminal(80, 24)
        await pilot.press("5")
        await settle(pilot)
        rows = table_rows(app, "#checks-table")
        raw_errors = [r for r in rows if r[0] == "error" and r[2].startswith("raw.")]
        assert raw_errors, "the simulator's bad treatments must fail raw checks of severity error"
        assert app.pipeline is not None and not app.pipeline.gate_errors
        quarantined = table_rows(app, "#quarantine-table")
        title = label_text(app, "#checks-title").splitlines()
        assert title[1] == (
            f"{len(quarantined)} rows quarantined (error), not loaded · gate ok: quarantine ≤ 5 % per batch"
        )
        assert len(title[1]) <= 78  # one line beside the page's padding at 80 columns
        app.exit()


class TraceApp(App[None]):
    CSS_PATH = APP_CSS

    def compose(self) -> ComposeResult:
        yield TracePlot(id="trace")


def braille_rows_by_column(text: str) -> dict[int, set[int]]:
    columns: dict[int, set[int]] = {}
    for row, line in enumerate(text.splitlines()):
        for column, char in enumerate(line):
            if "\u2801" <= char <= "\u28ff":
                columns.setdefault(column, set()).add(row)
    return columns


@pytest.mark.anyio
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_24_hour_trace_is_one_unbroken_line(size: tuple[int, int]) -> None:
    """A steep 2-hour swing 60–260 mg/dL across every band: each column holds the line, and the line in
    one column touches the line in the next (no empty column, no jump of a row or more)."""
    start = NOW - timedelta(hours=24)
    trace = tuple(
        (start + timedelta(minutes=5 * i), round(160 + 100 * math.sin(2 * math.pi * i / 24)))
        for i in range(289)
    )
    app = TraceApp()
    async with app.run_test(size=size) as pilot:
        plot = app.query_one(TracePlot)
        plot.show(OverviewSnapshot(NOW, "UTC", "main", trace=trace), "mg/dL")
        await pilot.pause()
        columns = braille_rows_by_column(plot.render().plain)
        first, last = min(columns), max(columns)
        assert last - first > size[0] * 0.8
        for column in range(first, last):
            here, right = columns.get(column, set()), columns.get(column + 1, set())
            assert here and right, f"column {column} or {column + 1} has no part of the line"
            gap = min(abs(a - b) for a in here for b in right)
            assert gap <= 1, f"the line jumps {gap} rows between columns {column} and {column + 1}"


def test_trace_runs_join_band_edges_and_break_at_gaps() -> None:
    at = [NOW + timedelta(minutes=5 * i) for i in range(5)]
    late = at[-1] + timedelta(minutes=20)
    runs = trace_runs([(at[0], 150), (at[1], 170), (at[2], 200), (at[3], 210), (at[4], 175), (late, 100)])
    assert [(band.key, [mg for _, mg in points]) for band, points in runs] == [
        ("in_range", [150, 170, 200]),
        ("high", [200, 210, 175]),
        ("in_range", [175]),
        ("in_range", [100]),
    ]


class ChartApp(App[None]):
    CSS_PATH = APP_CSS

    def __init__(self, chart: ChartsPlot) -> None:
        super().__init__()
        self.chart = chart

    def compose(self) -> ComposeResult:
        yield self.chart


def charts_snapshot(hourly_means: list[float]) -> ChartsSnapshot:
    until = NOW.date()
    since = until - timedelta(days=13)
    shares = {"very_low": 1.0, "low": 3.0, "in_range": 70.0, "high": 20.0, "very_high": 6.0}
    daily = tuple(DayMetrics(since + timedelta(days=i), 288, shares, 150.0, 6.9, 100.0) for i in range(14))
    hourly = tuple(HourProfile(h, 100, None, None, None, None, None, m) for h, m in enumerate(hourly_means))
    return ChartsSnapshot(14, since, until, "main", daily=daily, hourly=hourly)


@pytest.mark.anyio
@pytest.mark.parametrize("units", ["mg/dL", "mmol/L"])
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_daily_tir_chart_has_a_legend_of_the_band_colours(
    units: str, size: tuple[int, int]
) -> None:
    app = ChartApp(TirChart(id="tir"))
    async with app.run_test(size=size) as pilot:
        chart = app.query_one(TirChart)
        chart.show(charts_snapshot([150.0] * 24), units)
        await pilot.pause()
        shown = chart.render()
        assert isinstance(shown, Text)
        title = shown.plain.splitlines()[0]
        assert title.strip().endswith(units) and title.count("■") == 5, title
        assert ("■3.9–10.0" if units == "mmol/L" else "■70–180") in title
        for band, at in zip(BANDS, [i for i, c in enumerate(title) if c == "■"], strict=True):
            colours = {span.style.color for span in shown.spans if span.start <= at < span.end}  # type: ignore[union-attr]
            assert Color.from_rgb(*chart.band_rgb(band)) in colours, f"{band.name} is not in its colour"


def y_labels(text: str) -> dict[str, int]:
    """The y axis's labels and their rows, read off the plot's left edge."""
    labels = {}
    for row, line in enumerate(text.splitlines()):
        match = re.match(r"^\s*([0-9.]+)[┤├]", line)
        if match:
            labels[match.group(1)] = row
    return labels


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("units", "step", "targets"), [("mg/dL", 50, ("70", "180")), ("mmol/L", 2, ("3.9", "10.0"))]
)
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_hourly_chart_has_round_ticks_and_labelled_targets(
    units: str, step: int, targets: tuple[str, str], size: tuple[int, int]
) -> None:
    """Means up to 209 mg/dL: the axis reads 0, 50, 100… (0, 2, 4… mmol/L) and the 70/180 lines are labelled
    on their own rows, drawn across the plot."""
    means = [120 + 89 * math.sin(math.pi * h / 23) for h in range(24)]
    app = ChartApp(HourlyChart(id="hourly"))
    async with app.run_test(size=size) as pilot:
        chart = app.query_one(HourlyChart)
        chart.show(charts_snapshot(means), units)
        await pilot.pause()
        text = chart.render().plain  # type: ignore[union-attr]
        labels = y_labels(text)
        assert set(targets) <= set(labels), labels
        rounds = [label for label in labels if label not in targets]
        assert len(rounds) >= 3 and all(float(r) % step == 0 for r in rounds), labels
        lines = text.splitlines()
        for target in targets:
            row = lines[labels[target]]  # the bars hide the line where they are above it
            assert "─" in row and row.rstrip().endswith("┤"), f"no {target} line on the row labelled {target}"


@pytest.mark.anyio
async def test_a_refused_site_is_reported_once_with_its_url_and_attempts(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r on a site where nothing listens: the run fails after one attempt (a refused connection is not
    retried) and the dashboard says so once, with the URL, instead of counting fetch retries."""
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PHLO_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("PHLO_MANAGE_POSTGRES", "false")
    recorder = Recorder()
    with Engine(load_settings()) as engine:
        app = PhloApp(engine, poll_interval=60.0, schedule=False)
        async with app.run_test(size=(80, 24), message_hook=recorder) as pilot:
            await settle(pilot)
            await pilot.press("r")
            await settle(pilot)
            failed = [n for n in recorder.notifications() if n.startswith("run failed")]
            assert len(failed) == 1, recorder.notifications()
            assert "http://127.0.0.1:9/api/v1/entries/sgv.json: connection refused" in failed[0]
            assert "after 1 attempt" in failed[0]
            app.exit()
