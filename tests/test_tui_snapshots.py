"""SVG snapshots of every page at 80×24 and 120×40 over deterministic lakes: a seeded simulator, a run
store on a fixed clock with numbered run ids, and an app clock a few minutes later."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from engine.api.facade import Engine
from phlo_tui.app import PhloApp
from tests.test_tui import LakeHome, lake_home, settle

# The simulator's 'now' and the run store's clock; the app reads it a few minutes later.
EPOCH = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
APP_NOW = EPOCH + timedelta(minutes=4)


def fixed_home(path: Path, build: Callable[[Engine], object], **env: str) -> Iterator[LakeHome]:
    with pytest.MonkeyPatch.context() as mp:
        # Run and promotion records carry the store's clock: pin it so their times are the same each time.
        mp.setattr("engine.runs.database.utcnow", lambda: EPOCH)
        numbers = itertools.count(1)
        mp.setattr("engine.runs.store.new_run_id", lambda now=None: f"20260601T120000Z-{next(numbers):06d}")
        with lake_home(path, EPOCH.timestamp, build, PHLO_NOW=EPOCH.isoformat(), **env) as home:
            mp.undo()
            yield home


@pytest.fixture(scope="module")
def two_weeks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """Fourteen local days up to the epoch, backfilled and promoted."""

    def build(engine: Engine) -> None:
        engine.backfill("2026-05-19", "2026-06-01")

    yield from fixed_home(tmp_path_factory.mktemp("two-weeks") / "home", build)


@pytest.fixture(scope="module")
def two_days_on_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """Two local days on dev, never promoted: a diff to show."""

    def build(engine: Engine) -> None:
        engine.backfill("2026-05-31", "2026-06-01")

    yield from fixed_home(tmp_path_factory.mktemp("dev") / "home", build, PHLO_AUTO_PROMOTE="false")


def snapshot_app(home: LakeHome) -> Iterator[PhloApp]:
    with Engine(home.settings, clock=lambda: APP_NOW) as engine:
        yield PhloApp(engine, poll_interval=3600.0, clock=lambda: APP_NOW, schedule=False)


@pytest.fixture
def overview_app(two_weeks: LakeHome) -> Iterator[PhloApp]:
    yield from snapshot_app(two_weeks)


@pytest.fixture
def dev_app(two_days_on_dev: LakeHome) -> Iterator[PhloApp]:
    yield from snapshot_app(two_days_on_dev)


SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
PAGES = {
    "overview": (),
    "charts": ("2",),
    "runs": ("3",),
    "branches": ("4",),
    "quality": ("5",),
    "sql": ("6",),
}


def keys(*pressed: str) -> Callable[[Pilot[None]], object]:
    async def run_before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("page", PAGES)
def test_page(snap_compare: Callable[..., bool], overview_app: PhloApp, page: str, size: str) -> None:
    """Each page over fourteen promoted days."""
    assert snap_compare(overview_app, terminal_size=SIZES[size], run_before=keys(*PAGES[page]))


@pytest.mark.parametrize("size", SIZES)
def test_charts_agp(snap_compare: Callable[..., bool], overview_app: PhloApp, size: str) -> None:
    assert snap_compare(overview_app, terminal_size=SIZES[size], run_before=keys("2", "c"))


@pytest.mark.parametrize("size", SIZES)
def test_overview_in_mmol(snap_compare: Callable[..., bool], overview_app: PhloApp, size: str) -> None:
    assert snap_compare(overview_app, terminal_size=SIZES[size], run_before=keys("u"))


@pytest.mark.parametrize("size", SIZES)
def test_branches_with_dev_ahead(snap_compare: Callable[..., bool], dev_app: PhloApp, size: str) -> None:
    assert snap_compare(dev_app, terminal_size=SIZES[size], run_before=keys("4"))


def test_overview_before_a_first_promotion(snap_compare: Callable[..., bool], dev_app: PhloApp) -> None:
    assert snap_compare(dev_app, terminal_size=(80, 24), run_before=keys())


def test_overview_light_theme(snap_compare: Callable[..., bool], overview_app: PhloApp) -> None:
    assert snap_compare(overview_app, terminal_size=(80, 24), run_before=keys("t"))


TREATMENT_CHARTS = {"treatments": 4, "boluses": 5}
"""How many `c` presses on Charts show it."""


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chart", TREATMENT_CHARTS)
def test_charts_treatments(
    snap_compare: Callable[..., bool], overview_app: PhloApp, chart: str, size: str
) -> None:
    """Issue 7 on real simulator data: daily insulin and carbs, and each bolus with what followed it.
    (The overview snapshots show the bolus and carb markers on the trace.)"""
    presses = ("c",) * TREATMENT_CHARTS[chart]
    assert snap_compare(overview_app, terminal_size=SIZES[size], run_before=keys("2", *presses))
