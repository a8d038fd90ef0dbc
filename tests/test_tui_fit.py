"""What the dashboard draws fits the terminal (issue 14): the Overview's band legend stays one line at
80 columns in both units, with the ranges spelled out when there is room."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

import phlo_tui
from engine.sufficiency import Sufficiency
from phlo_tui.snapshot import BandShares, OverviewSnapshot
from phlo_tui.widgets.band_panel import BandPanel

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
    bands = BandShares(4000, *shares, mean_mg_dl=160.0, sd_mg_dl=48.0, days=14)
    enough = Sufficiency(4000, 4032.0, 14)
    return OverviewSnapshot(
        NOW, "UTC", "main", today=bands, window=bands, today_data=enough, window_data=enough
    )


# The demo's shares, and the widest: four bands under 10 % (one decimal each) and one at 100.
SHARES = {"demo": (0.5, 0.8, 71.0, 22.0, 5.8), "widest": (1.5, 2.5, 75.0, 12.0, 9.0), "all": (0, 0, 100, 0, 0)}


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
