"""The Overview's early read (engine.api.fastread): what the engine shows, from recorded files, or nothing.

On a real lake built by the engine from the simulator over HTTP: the early Overview equals the engine's
for the same instant, on main and after a dev commit that was not promoted; a snapshot without a record
or a recorded file that is gone gives None (the dashboard then waits for the engine), never other
figures; the pipeline bar's early status is the engine's; the Pilot test shows the page and the bar
filled while the engine is held back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from textual.message import Message
from textual.notifications import Notify
from textual.widgets import Digits

from engine.api.facade import Engine
from engine.api.fastread import RECORDED_TABLES, FastReader, NotRecorded
from engine.api.pages.overview import READINGS, load_early_overview, load_overview
from engine.api.pages.status import load_early_status, load_status
from engine.config import Settings, load_settings
from engine.lake.promotion import promote
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from phlo_tui.app import EngineReady, PhloApp, StatusPolled
from phlo_tui.screens.overview import OverviewLoaded
from phlo_tui.widgets.pipeline_bar import PipelineBar
from tests.module_env import engine_env
from tests.simclock import HOUR, START, Clock
from tests.test_tui import settle

SIZE = (100, 32)


@dataclasses.dataclass
class Home:
    settings: Settings
    clock: Clock
    env: dict[str, str]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """Three days from the simulator (with treatments), gated and promoted to main by a run."""
    with built_home(tmp_path_factory.mktemp("fastread")) as home:
        yield home


@contextmanager
def built_home(path: Path, **extra: str) -> Iterator[Home]:
    """A home filled by one run of the real engine from a simulator that keeps serving."""
    clock = Clock()
    clock.now -= 6 * HOUR  # six hours behind the engine: room for `run_new_hour` to step past a signal loss
    with (
        pytest.MonkeyPatch.context() as mp,
        SimulatorServer(GlucoseSimulator(seed=5, clock=clock)) as server,
    ):
        env = engine_env(mp, path, server.url, **{"PHLO_LOOKBACK_MINUTES": "0", **extra})
        settings = load_settings()
        with Engine(settings) as engine:
            assert engine.run_now().status.value == "succeeded"
        yield Home(settings, clock, env)


def run_new_hour(engine: Engine, lake: Home) -> None:
    """One run with the simulator an hour on, and on by the hour until that brings new readings: it
    loses the signal for 15 min to 2 h a few times a day, and the time of day may fall in one."""
    for _ in range(3):
        lake.clock.now += HOUR
        run = engine.run_now()
        assert run.status.value == "succeeded"
        if run.summary["sources"]["entries"]["stored"]:
            return
    raise AssertionError("three simulator hours on, still no new reading")


def both(settings: Settings, now: datetime) -> tuple[object, object]:
    with Engine(settings) as engine:
        full = load_overview(engine, settings.timezone, now)
    return load_early_overview(settings, now), full


def test_the_early_overview_is_the_engines(lake: Home) -> None:
    now = START
    early, full = both(lake.settings, now)
    assert early == full
    assert early is not None and early.branch == "main" and early.latest is not None
    assert early.trace and early.today is not None and early.window is not None
    assert early.treatments, "the simulator's boluses and carbs of the last 24 h"


def test_a_dev_commit_without_promotion_leaves_mains_early_figures_right(lake: Home) -> None:
    now = START
    before = load_early_overview(lake.settings, now)
    unpromoted = dataclasses.replace(lake.settings, auto_promote=False)
    with Engine(unpromoted) as engine:
        run_new_hour(engine, lake)
        main_newest = engine.query(f"select max(reading_ts) from {READINGS}", "main").rows[0][0]
        dev_newest = engine.query(f"select max(reading_ts) from {READINGS}", "dev").rows[0][0]
    assert dev_newest > main_newest, "dev holds an hour main does not"
    early, full = both(lake.settings, now)
    assert early == full == before
    # dev is read from its own recorded head, the same rows the engine reads there; one reader's queries
    # share a connection, whose views follow the branch asked for.
    sql = f"select count(*), max(reading_ts), sum(glucose_mg_dl) from {READINGS}"
    reader = FastReader(lake.settings)
    try:
        with Engine(lake.settings) as engine:
            for branch in ("dev", "main", "dev"):
                assert reader.query(sql, branch).rows == engine.query(sql, branch).rows
    finally:
        reader.close()


def test_before_a_first_promotion_the_early_overview_is_devs_as_the_engines(tmp_path: Path) -> None:
    with built_home(tmp_path, PHLO_AUTO_PROMOTE="false") as home:
        early, full = both(home.settings, START)
    assert early == full
    assert early is not None and early.branch == "dev" and early.latest is not None


def test_a_snapshot_without_a_record_reads_nothing_until_the_engine_records_it(lake: Home) -> None:
    """A promotion that recorded nothing (an older version's): main's snapshot has no files recorded."""
    with Engine(dataclasses.replace(lake.settings, auto_promote=False)) as engine:
        before = engine.main_snapshots()[READINGS]
        assert before is not None
        run_new_hour(engine, lake)
        engine.store.forget_snapshot_files(READINGS, {before})
        record = promote(engine.lake, engine.store, None, engine.lake_tables())
        assert record is not None and record.snapshot(READINGS) != before
    now = START
    assert load_early_overview(lake.settings, now) is None
    with Engine(lake.settings) as engine:
        engine.record_early_files()
    early, full = both(lake.settings, now)
    assert early is not None and early == full


def test_a_recorded_file_that_is_gone_reads_nothing(lake: Home) -> None:
    """Maintenance may delete an expired snapshot's files: the early read then gives up, quietly."""
    with closing(sqlite3.connect(lake.settings.runs_db)) as con:
        files = [f for (text,) in con.execute("select files from snapshot_files") for f in json.loads(text)]
    victim = Path(files[0])
    hidden = victim.with_name(victim.name + ".away")
    victim.rename(hidden)
    try:
        assert load_early_overview(lake.settings, START) is None
    finally:
        hidden.rename(victim)
    assert load_early_overview(lake.settings, START) is not None


def test_the_early_status_is_the_engines(lake: Home) -> None:
    now = START
    early = load_early_status(lake.settings, now)
    with Engine(lake.settings) as engine:
        assert early == load_status(engine, now, None)
    assert early is not None and early.latest is not None and early.last_promotion is not None


def test_the_reader_refuses_what_it_cannot_answer(lake: Home, tmp_path: Path) -> None:
    reader = FastReader(lake.settings)
    try:
        with pytest.raises(NotRecorded):
            reader.query(f"select * from {READINGS}", "feature")
        assert reader.has_table(READINGS) and not reader.has_table("gold.fct_hourly_glucose_profile")
    finally:
        reader.close()
    # A home never run: no run store to read (and none is created).
    empty = dataclasses.replace(lake.settings, home=tmp_path / "never")
    assert load_early_overview(empty, START) is None
    assert load_early_status(empty, START) is None
    assert not (tmp_path / "never").exists()


def test_only_the_overviews_snapshots_stay_recorded(lake: Home) -> None:
    with Engine(lake.settings) as engine:
        pinned = engine.main_snapshots()
        for table in RECORDED_TABLES:
            heads = {engine.lake.snapshot_id(table, b) for b in ("dev", "main")} | {pinned.get(table)}
            assert engine.store.recorded_snapshots(table) == {s for s in heads if s is not None}


def test_the_early_read_imports_no_heavy_library(lake: Home) -> None:
    """In a fresh interpreter, as the dashboard starts: the read works and leaves the lake's libraries
    (seconds to import) to the engine's worker."""
    code = (
        "import sys;"
        "from engine.clock import clock_from_env;"
        "from engine.config import load_settings;"
        "from engine.api.pages.overview import load_early_overview;"
        "snapshot = load_early_overview(load_settings(), clock_from_env()());"
        "heavy = ('pyiceberg', 'pandas', 'dlt', 'pandera', 'sqlalchemy', 'pyarrow');"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)), snapshot is not None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **lake.env},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True"


@pytest.mark.anyio
async def test_the_overview_is_filled_before_the_engine_is_there(lake: Home) -> None:
    """The engine is held back by a writer holding the run store (its construction waits for the
    store's lock, as it would behind a busy daemon); the early read, read-only, is not."""
    loaded, polled, ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
    messages: list[Message] = []

    def hook(message: Message) -> None:
        messages.append(message)
        if isinstance(message, OverviewLoaded):
            loaded.set()
        if isinstance(message, StatusPolled):
            polled.set()
        if isinstance(message, EngineReady):
            ready.set()

    blocker = sqlite3.connect(lake.settings.runs_db, isolation_level=None)
    blocker.execute("begin immediate")
    app = PhloApp(settings=lake.settings, poll_interval=60.0, schedule=False)
    try:
        async with app.run_test(size=SIZE, message_hook=hook) as pilot:
            await asyncio.wait_for(asyncio.gather(loaded.wait(), polled.wait()), 60)
            await pilot.pause()
            assert not app.ready and not any(isinstance(m, EngineReady) for m in messages)
            early = next(m for m in messages if isinstance(m, OverviewLoaded)).snapshot
            assert early.latest is not None
            assert app.screen.query_one("#reading-value", Digits).value == str(early.latest.mg_dl)
            status = next(m for m in messages if isinstance(m, StatusPolled))
            assert status.early and app.pipeline is status.status
            bar = app.screen.query_one(PipelineBar).render().plain
            assert "succeeded" in bar and "gate ok" in bar
            await pilot.press("r")  # a key that needs the engine says it is starting
            await pilot.pause()
            blocker.execute("rollback")
            await asyncio.wait_for(ready.wait(), 60)
            await settle(pilot)
            assert app.ready
            notes = [m.notification.message for m in messages if isinstance(m, Notify)]
            assert notes == ["starting…"], notes
            assert [m for m in messages if isinstance(m, StatusPolled)][-1].early is False
            latest = [m for m in messages if isinstance(m, OverviewLoaded)][-1].snapshot
            assert latest.latest == early.latest
    finally:
        blocker.close()
        app.close_engine()


@pytest.mark.anyio
async def test_a_home_without_records_gets_them_from_the_dashboards_engine(lake: Home) -> None:
    """A home written by an older version: the first start waits for the engine, which then records
    the files, so that the next start reads early."""
    with closing(sqlite3.connect(lake.settings.runs_db)) as con:
        con.execute("delete from snapshot_files")
        con.commit()
    assert load_early_overview(lake.settings, START) is None
    app = PhloApp(settings=lake.settings, poll_interval=60.0, schedule=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert app.ready and app.early_missed
            assert app.screen.query_one("#reading-value", Digits).value
    finally:
        app.close_engine()
    early, full = both(lake.settings, START)
    assert early is not None and early == full
