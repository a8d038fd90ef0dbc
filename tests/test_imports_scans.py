"""LibreView scans on the dashboard: the Overview's trace marks them, and no figure counts them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from engine.api.facade import Engine
from engine.api.pages.overview import load_early_overview, load_overview
from engine.runs.records import RunStatus
from engine.sim.export import write_export
from phlo_tui.screens.overview import OverviewScreen
from phlo_tui.widgets.trace_plot import SCAN_MARKER, TracePlot
from tests.simclock import START
from tests.test_tui import LakeHome, behind, dashboard, lake_home


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """Two days of a LibreView export up to the suite's data time, imported and promoted; no site data
    (the simulator's clock is a year behind)."""
    base = tmp_path_factory.mktemp("scans")
    export = write_export("libreview", base / "libre.csv", days=2, until=START, tz="UTC")

    def build(engine: Engine) -> None:
        run = engine.import_file(export.path)
        assert run.status is RunStatus.SUCCEEDED, run.error

    with lake_home(base / "home", behind(24 * 365), build) as home:
        yield home


@pytest.mark.anyio
async def test_the_trace_marks_scans_that_no_figure_counts(imported: LakeHome) -> None:
    async with dashboard(imported) as (app, pilot, _, engine):
        overview = app.screen
        assert isinstance(overview, OverviewScreen) and overview.snapshot is not None
        snapshot = overview.snapshot
        since = snapshot.now - timedelta(hours=24)
        stored = engine.query(
            "select record_ts, glucose_mg_dl from raw.import_records where record_kind = 'scan' "
            "and record_ts >= $since order by record_ts",
            "main",
            params={"since": since},
        ).rows
        assert len(stored) >= 5
        assert snapshot.scans == tuple((ts, int(mg)) for ts, mg in stored)
        # Scans are no readings: the trace and today's shares hold the historic readings only.
        readings = engine.query(
            "select count(*) from raw.import_records where record_kind = 'reading' and record_ts >= $since",
            "main",
            params={"since": since},
        ).rows[0][0]
        assert len(snapshot.trace) == readings > 0
        today = engine.query(
            "select count(*) from raw.import_records where record_kind = 'reading' "
            "and cast(timezone('UTC', record_ts) as date) = $day",
            "main",
            params={"day": snapshot.now.date()},
        ).rows[0][0]
        assert snapshot.today is not None and snapshot.today.readings == today
        plain = overview.query_one(TracePlot).render().plain  # type: ignore[union-attr]
        assert f"{SCAN_MARKER} scan" in plain and plain.count(SCAN_MARKER) > 1
        await pilot.pause()


def test_the_first_paint_has_the_scans_from_the_engines_query(imported: LakeHome) -> None:
    """The light reader (engine.api.fastread) answers the scans' read from the recorded files of
    raw.import_records, with the engine's query: the dashboard's first paint has them too."""
    with Engine(imported.settings) as engine:
        full = load_overview(engine, imported.settings.timezone, START)
    early = load_early_overview(imported.settings, START)
    assert early is not None and len(early.scans) >= 5
    assert early == full
