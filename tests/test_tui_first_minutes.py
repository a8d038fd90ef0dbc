"""The dashboard on a home a new user has just filled by `import`, without a Nightscout site (Pilot):
it opens, shows what it has, and says when that is not enough data for the figures."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.errors import PhloError
from phlo_tui.app import EngineReady, PhloApp, check_startable
from phlo_tui.screens.overview import OverviewLoaded
from phlo_tui.screens.text_modal import TextModal
from phlo_tui.widgets.band_panel import BandPanel
from tests.test_tui import Recorder, settle

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def export(path: Path, readings: list[tuple[datetime, int]]) -> Path:
    entries = [
        {
            "_id": f"{i:024x}",
            "type": "sgv",
            "sgv": sgv,
            "date": int(ts.timestamp() * 1000),
            "dateString": ts.isoformat(),
            "device": "dexcom",
            "direction": "Flat",
        }
        for i, (ts, sgv) in enumerate(readings, start=1)
    ]
    path.write_bytes(gzip.compress(json.dumps(entries).encode()))
    return path


def test_an_empty_home_without_a_site_is_refused_a_home_filled_by_import_is_not(
    home: Path, tmp_path: Path
) -> None:
    settings = load_settings()
    with pytest.raises(PhloError, match="no Nightscout site configured"):
        check_startable(settings)
    with Engine(settings) as engine:
        engine.import_file(export(tmp_path / "e.json.gz", [(NOW - timedelta(minutes=10), 120)]))
    check_startable(settings)


@pytest.mark.anyio
async def test_one_imported_reading_is_not_enough_data(home: Path, tmp_path: Path) -> None:
    """One reading: today and 14 days say "not enough data", no band share of 100 % and no GMI."""
    settings = load_settings()
    with Engine(settings) as engine:
        run = engine.import_file(export(tmp_path / "e.json.gz", [(NOW - timedelta(minutes=10), 120)]))
        assert run.status.value == "succeeded"
    recorder = Recorder()
    app = PhloApp(settings=settings, poll_interval=60.0, clock=lambda: NOW)
    assert app.schedule is False  # no site: nothing to fetch on the hour
    async with app.run_test(size=(100, 32), message_hook=recorder) as pilot:
        await settle(pilot)
        assert recorder.of(EngineReady) and recorder.of(OverviewLoaded)
        bands = app.screen.query_one(BandPanel).render().plain
        lines = bands.splitlines()
        assert lines[1].startswith("today") and "not enough data: 1 readings" in lines[1]
        assert lines[2].startswith("14 d") and "not enough data: 1 readings" in lines[2]
        assert "GMI" not in bands and "100" not in bands
        assert "not enough data: 1 readings, 0 % of the period" in bands
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, TextModal)
        assert "no Nightscout site configured" in app.screen.text
        app.exit()


@pytest.mark.anyio
async def test_today_is_measured_against_the_time_elapsed(home: Path, tmp_path: Path) -> None:
    """Readings every 5 minutes since midnight: today is enough data at noon (not 50 % of a day)."""
    midnight = NOW.replace(hour=0)
    readings = [(midnight + timedelta(minutes=5 * i), 110) for i in range(0, 12 * 12)]
    settings = load_settings()
    with Engine(settings) as engine:
        engine.import_file(export(tmp_path / "e.json.gz", readings))
    recorder = Recorder()
    app = PhloApp(settings=settings, poll_interval=60.0, clock=lambda: NOW)
    async with app.run_test(size=(100, 32), message_hook=recorder) as pilot:
        await settle(pilot)
        (loaded,) = recorder.of(OverviewLoaded)[-1:]
        snapshot = loaded.snapshot  # type: ignore[attr-defined]
        assert snapshot.today_data.coverage_pct == 100.0 and snapshot.today_data.sufficient
        assert not snapshot.window_data.sufficient  # half a day of fourteen
        lines = app.screen.query_one(BandPanel).render().plain.splitlines()
        assert lines[1].startswith("today") and "100 %" in lines[1]
        assert "not enough data" in lines[2]
        app.exit()


def test_the_charts_title_says_what_history_a_long_window_has() -> None:
    """A 90-day view over 14 days of history says so, and that 14 of 90 days are not enough data."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from engine.api.pages import ChartsSnapshot
    from engine.api.pages.charts import DayMetrics
    from engine.api.sufficiency import assess

    until = date(2026, 3, 18)
    since = until - timedelta(days=89)
    first = until - timedelta(days=13)
    daily = tuple(DayMetrics(first + timedelta(days=i), 288, {}, 120.0, 6.2, 100.0) for i in range(14))
    data = assess(14 * 288, since, until, ZoneInfo("UTC"), NOW.replace(hour=23, minute=59, second=59))
    snapshot = ChartsSnapshot(90, since, until, "main", daily=daily, data=data)
    note = snapshot.note()
    assert "history from 2026-03-05: 14 of 90 days" in note
    assert "not enough data: 4032 readings, 16 % of the period" in note
    full = ChartsSnapshot(
        14,
        first,
        until,
        "main",
        daily=daily,
        data=assess(14 * 288, first, until, ZoneInfo("UTC"), NOW.replace(hour=23, minute=59, second=59)),
    )
    assert full.note() == ""
