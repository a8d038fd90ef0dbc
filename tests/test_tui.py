"""The dashboard driven by keys (Pilot) over real lakes built by the real engine from the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import DataTable, Digits, Input, Label

from engine.api.facade import Engine
from engine.api.pages import BandShares, BolusOutcome, ChartsSnapshot, DayTreatments, TreatmentMark
from engine.api.pages.overview import load_overview
from engine.clock import NOW_ENV
from engine.config import Settings, load_settings
from engine.errors import PhloError
from engine.runs.records import RunStatus, RunTrigger
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from phlo_tui.app import EngineReady, PhloApp, RunFinished, StatusPolled, next_scheduled, run_app
from phlo_tui.screens.branches import BranchesScreen, DiffComputed
from phlo_tui.screens.charts import ChartsLoaded, ChartsScreen
from phlo_tui.screens.confirm_promote import ConfirmPromote
from phlo_tui.screens.help import HelpScreen
from phlo_tui.screens.overview import OverviewLoaded, OverviewScreen
from phlo_tui.screens.quality import QualityLoaded
from phlo_tui.screens.runs import RunsLoaded
from phlo_tui.screens.sql import QueryFinished
from phlo_tui.screens.text_modal import TextModal
from phlo_tui.widgets.band_panel import BandPanel, bar_cells
from phlo_tui.widgets.bolus_table import BolusTable
from phlo_tui.widgets.glucose import BANDS, ago, arrow, band_of, glucose_text
from phlo_tui.widgets.nav import ScreenTabs
from phlo_tui.widgets.pipeline_bar import PipelineBar, progress_bar
from phlo_tui.widgets.trace_plot import TracePlot
from phlo_tui.widgets.treatment_chart import TreatmentChart
from phlo_tui.widgets.trend_chart import TrendChart
from tests.simclock import START, START_S

HOUR = 3600.0
SIZE = (100, 32)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class LakeHome:
    settings: Settings
    server: SimulatorServer
    env: dict[str, str]
    """The variables that make these settings, for a process started on the same home."""


@contextmanager
def lake_home(
    path: Path,
    clock: Callable[[], float],
    build: Callable[[Engine], object],
    *,
    serve_treatments: bool = True,
    **env: str,
) -> Iterator[LakeHome]:
    """A phlo home filled by the real engine from a simulator on `clock`, which keeps serving."""
    with (
        pytest.MonkeyPatch.context() as mp,
        SimulatorServer(GlucoseSimulator(seed=11, clock=clock), serve_treatments=serve_treatments) as server,
    ):
        for var in list(os.environ):
            if var.startswith(("PHLO_", "NIGHTSCOUT_")):
                mp.delenv(var)
        values = {
            "PHLO_HOME": str(path),
            "PHLO_CONFIG": str(path.parent / "no-config.toml"),
            "PHLO_TIMEZONE": "UTC",
            "NIGHTSCOUT_URL": server.url,
            "PHLO_INITIAL_DAYS": "3",
            "PHLO_MAX_ATTEMPTS": "2",
            "PHLO_LOOKBACK_MINUTES": "0",
            "PHLO_MANAGE_POSTGRES": "false",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            NOW_ENV: START.isoformat(),
            **env,
        }
        for key, value in values.items():
            mp.setenv(key, value)
        settings = load_settings()
        with Engine(settings) as engine:
            build(engine)
        yield LakeHome(settings, server, values)


def behind(hours: float) -> Callable[[], float]:
    """A simulator clock `hours` before the suite's data time (tests/simclock.py)."""
    pinned = START_S - hours * HOUR
    return lambda: pinned


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """Three days, gates passed, promoted to main."""
    with lake_home(tmp_path_factory.mktemp("promoted") / "home", behind(2), Engine.run_now) as home:
        yield home


@pytest.fixture(scope="module")
def no_treatments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """Three days promoted from a site without a treatments collection (404): no treatment tables."""
    path = tmp_path_factory.mktemp("no-treatments") / "home"
    with lake_home(path, behind(2), Engine.run_now, serve_treatments=False) as home:
        yield home


@pytest.fixture(scope="module")
def unpromoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """Three days on dev, main still empty."""
    path = tmp_path_factory.mktemp("unpromoted") / "home"
    with lake_home(path, behind(2), Engine.run_now, PHLO_AUTO_PROMOTE="false") as home:
        yield home


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeHome]:
    """The newest reading is 30 h old: the freshness check fails with severity error and holds dev."""
    with lake_home(tmp_path_factory.mktemp("held") / "home", behind(30), Engine.run_now) as home:
        yield home


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[Message]) -> list[Message]:
        return [m for m in self.messages if isinstance(m, kind)]

    def notifications(self) -> list[str]:
        return [f"{m.notification.title}: {m.notification.message}" for m in self.of(Notify)]  # type: ignore[attr-defined]


async def settle(pilot: Pilot[None]) -> None:
    """Wait until no worker runs and what they posted is handled; never sleeps."""
    for _ in range(100):
        await pilot.pause()
        running = [w for w in pilot.app.workers if not w.is_finished]
        if not running:
            await pilot.pause()
            if all(w.is_finished for w in pilot.app.workers):
                return
            continue
        await asyncio.gather(*(w.wait() for w in running), return_exceptions=True)
    raise AssertionError(f"workers kept starting: {list(pilot.app.workers)}")


@asynccontextmanager
async def dashboard(
    home: LakeHome, settings: Settings | None = None
) -> AsyncIterator[tuple[PhloApp, Pilot[None], Recorder, Engine]]:
    engine = Engine(settings or home.settings)
    engine.role = "tui"
    recorder = Recorder()
    app = PhloApp(engine, poll_interval=60.0, schedule=False)
    try:
        async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
            await settle(pilot)
            yield app, pilot, recorder, engine
    finally:
        engine.close()


def table_rows(app: PhloApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def label_text(app: PhloApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Label).render())


@pytest.mark.anyio
async def test_number_keys_switch_pages(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, _):
        assert app.current_mode == "overview"
        for key, mode in (("2", "charts"), ("3", "runs"), ("4", "branches"), ("5", "quality"), ("6", "sql")):
            await pilot.press(key)
            await settle(pilot)
            assert app.current_mode == mode
        await pilot.press("escape", "1")
        await settle(pilot)
        assert app.current_mode == "overview"
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        ids = {row[2] for row in table_rows(app, "#help-keys")}
        assert {"screen.overview", "screen.sql", "run", "help", "quit"} <= ids


@pytest.mark.anyio
async def test_overview_shows_the_newest_reading(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, _, recorder, engine):
        newest = engine.query(
            "select glucose_mg_dl, direction from silver.fct_glucose_readings order by reading_ts desc limit 1"
        ).rows[0]
        assert recorder.of(OverviewLoaded) and recorder.of(StatusPolled)
        assert app.screen.query_one("#reading-value", Digits).value == str(newest[0])
        assert str(app.screen.query_one("#reading-arrow", Label).render()) == arrow(newest[1])
        bands = app.screen.query_one(BandPanel).render().plain
        assert "today" in bands and "14 d" in bands
        # Three days of history are not enough (engine.api.sufficiency): the period says so, with no GMI.
        assert "not enough data" in bands and "GMI" not in bands
        assert "dev, not yet promoted" not in bands


def test_the_overviews_gmi_cv_and_gri_are_the_consensus_formulas_of_its_readings(promoted: LakeHome) -> None:
    """The Overview takes GMI, CV and GRI from sql/macros/glucose_metrics.sql, the gold models' formulas,
    over the same readings as its band shares and mean: checked here against the published formulas."""
    with Engine(promoted.settings) as engine:
        snapshot = load_overview(engine, promoted.settings.timezone, engine.clock())
    for shares in (snapshot.today, snapshot.window):
        assert shares is not None and shares.mean_mg_dl is not None and shares.sd_mg_dl is not None
        assert shares.gmi_pct == pytest.approx(3.31 + 0.02392 * shares.mean_mg_dl)
        assert shares.cv_pct == pytest.approx(100 * shares.sd_mg_dl / shares.mean_mg_dl)
        risk = 3.0 * shares.very_low + 2.4 * shares.low + 1.6 * shares.very_high + 0.8 * shares.high
        assert shares.gri == pytest.approx(min(risk, 100.0))


@pytest.mark.anyio
async def test_overview_falls_back_to_dev_before_a_first_promotion(unpromoted: LakeHome) -> None:
    async with dashboard(unpromoted) as (app, _, _, engine):
        newest = engine.query(
            "select glucose_mg_dl from silver.fct_glucose_readings order by reading_ts desc limit 1", "dev"
        ).rows[0][0]
        assert app.screen.query_one("#reading-value", Digits).value == str(newest)
        assert "dev, not yet promoted" in app.screen.query_one(BandPanel).render().plain


@pytest.mark.anyio
async def test_runs_page_lists_runs_and_shows_the_steps_of_the_selected_one(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, recorder, engine):
        await pilot.press("3")
        await settle(pilot)
        runs = engine.list_runs(50)
        rows = table_rows(app, "#runs-table")
        assert [r[-1] for r in rows] == [r.id for r in runs]
        assert recorder.of(RunsLoaded)
        await pilot.press("enter")
        await settle(pilot)
        steps = [r[1] for r in table_rows(app, "#steps-table")]
        assert steps == [s.label for s in runs[0].steps]
        # Each source's fetch, validate and merge steps are named with their source.
        named = {"fetch entries", "validate entries", "merge entries", "validate treatments", "gates"}
        assert named <= set(steps)
        assert runs[0].id in label_text(app, "#run-detail")


@pytest.mark.anyio
async def test_r_runs_now_and_the_new_run_is_listed(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, recorder, engine):
        await pilot.press("3")
        await settle(pilot)
        before = len(table_rows(app, "#runs-table"))
        await pilot.press("r")
        await settle(pilot)
        finished = recorder.of(RunFinished)
        assert len(finished) == 1
        run = finished[0].run  # type: ignore[attr-defined]
        assert run is not None and run.status is RunStatus.SUCCEEDED
        rows = table_rows(app, "#runs-table")
        assert len(rows) == before + 1
        assert rows[0][-1] == run.id == engine.list_runs(1)[0].id
        assert any("manual run succeeded" in n for n in recorder.notifications())


@pytest.mark.anyio
async def test_branches_shows_the_diff_and_p_promotes_after_confirming(unpromoted: LakeHome) -> None:
    async with dashboard(unpromoted) as (app, pilot, recorder, engine):
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, BranchesScreen)
        assert recorder.of(DiffComputed)
        diff = {r[0]: r for r in table_rows(app, "#diff-table")}
        dev_rows = engine.query("select count(*) from raw.glucose_entries", "dev").rows[0][0]
        assert diff["raw.glucose_entries"][2] == f"+{dev_rows}"
        assert "gate passed" in label_text(app, "#gate-state")

        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmPromote)
        shown = table_rows(app, "#confirm-diff")
        assert "raw.glucose_entries" in {r[0] for r in shown}
        await pilot.press("n")
        await settle(pilot)
        assert engine.query("select count(*) from raw.glucose_entries", "main").rows[0][0] == 0

        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert engine.query("select count(*) from raw.glucose_entries", "main").rows[0][0] == dev_rows
        assert not any(d.changed for d in engine.diff())
        assert all(r[2] == "0" for r in table_rows(app, "#diff-table"))
        assert any("main now equals dev" in n for n in recorder.notifications())


@pytest.mark.anyio
async def test_p_is_refused_with_the_reason_while_an_error_gate_fails(held: LakeHome) -> None:
    async with dashboard(held) as (app, pilot, _, engine):
        gate_errors = engine.gate_errors()
        assert gate_errors, "the fixture must leave a failing error gate"
        await pilot.press("4")
        await settle(pilot)
        assert "gate held" in label_text(app, "#gate-state")
        assert "p promotes" not in label_text(app, "#promotion-state")
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, TextModal)
        assert gate_errors[0] in app.screen.text
        await pilot.press("escape")
        assert engine.last_promotion() is None


@pytest.mark.anyio
async def test_quality_filters_by_severity_and_enter_opens_the_samples(held: LakeHome) -> None:
    async with dashboard(held) as (app, pilot, recorder, engine):
        await pilot.press("5")
        await settle(pilot)
        assert recorder.of(QualityLoaded)
        checks = engine.quality()
        severities = {c.severity for c in checks}
        assert severities == {"error", "warning"}, "the fixture must fail checks of both severities"
        assert len(table_rows(app, "#checks-table")) == len(checks)
        for severity in ("error", "warning"):
            await pilot.press("s")
            rows = table_rows(app, "#checks-table")
            assert rows and {r[0] for r in rows} == {severity}
            assert len(rows) == sum(1 for c in checks if c.severity == severity)
        await pilot.press("s")
        assert len(table_rows(app, "#checks-table")) == len(checks)

        table = app.screen.query_one("#checks-table", DataTable)
        severity, failing, table_name, check, *_ = table_rows(app, "#checks-table")[table.cursor_row]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TextModal)
        assert f"{severity} · {table_name} · {check}" in app.screen.text
        assert f"{failing} failing row(s)" in app.screen.text
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "quality" and not isinstance(app.screen, TextModal)


@pytest.mark.anyio
async def test_a_failing_worker_notifies_and_the_app_keeps_running(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, recorder, engine):

        def broken(*args: object, **kwargs: object) -> object:
            raise PhloError("the lake is unreadable", "check the disk")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine, "query", broken)
            await pilot.press("ctrl+r")
            await settle(pilot)
        assert any("the lake is unreadable" in n for n in recorder.notifications())
        assert app.is_running
        await pilot.press("2")
        await settle(pilot)
        assert app.current_mode == "charts"


@pytest.mark.anyio
async def test_overview_alerts_when_the_newest_reading_is_old(held: LakeHome) -> None:
    async with dashboard(held) as (app, _, _, engine):
        alert = app.screen.query_one("#freshness-alert", Label)
        assert alert.display and alert.has_class("error")
        assert "no new glucose reading for 30 h" in str(alert.render())
        # Only the gate's failure, freshness: checks that quarantined a treatment held nothing.
        errors = engine.store.standing_gate_errors()
        assert len(errors) == 1 and errors[0].startswith("silver.fct_glucose_readings: freshness")
        assert f"gate held ({len(errors)})" in app.screen.query_one(PipelineBar).render().plain


@pytest.mark.anyio
async def test_sql_page_shows_results_and_errors_in_a_modal(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, recorder, engine):
        await pilot.press("6")
        await settle(pilot)
        box = app.screen.query_one("#sql-query", Input)
        box.value = "select count(*) as n from raw.glucose_entries"
        await pilot.press("enter")
        await settle(pilot)
        assert recorder.of(QueryFinished)
        count = engine.query("select count(*) from raw.glucose_entries").rows[0][0]
        assert table_rows(app, "#sql-result") == [[str(count)]]
        box.value = "select nothing from nowhere"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TextModal)
        assert "SQL error" in app.screen.text and "nowhere" in app.screen.text


@pytest.fixture(scope="module")
def attached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LakeHome, subprocess.Popen[str]]]:
    """A daemon owns this home: the dashboard must send its commands through the queue."""
    path = tmp_path_factory.mktemp("attached") / "home"
    # Its hourly schedule must not fire during the test: half an hour from now, by the wall clock that
    # APScheduler keeps (process time, engine.clock).
    minute = str((datetime.now(UTC).minute + 30) % 60)
    with lake_home(path, behind(2), lambda engine: None, PHLO_SCHEDULE_MINUTE=minute) as home:
        env = {**os.environ, **home.env}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "phlo_tui.cli", "--daemon"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            with Engine(home.settings) as engine:
                deadline = time.monotonic() + 120
                # The daemon catches up at once: wait for that run to finish before the dashboard starts.
                while not (
                    engine.daemon() is not None
                    and any(r.status in RunStatus.FINISHED for r in engine.list_runs(5))
                ):
                    assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
                    time.sleep(0.2)
            yield home, daemon
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)


@pytest.mark.anyio
async def test_attached_to_a_daemon_r_is_queued_to_it(
    attached: tuple[LakeHome, subprocess.Popen[str]],
) -> None:
    home, daemon = attached
    async with dashboard(home) as (app, pilot, recorder, engine):
        assert f"daemon pid {daemon.pid}" in app.screen.query_one(PipelineBar).render().plain
        before = len(engine.list_runs(50))
        await pilot.press("r")
        await settle(pilot)
        finished = recorder.of(RunFinished)
        assert len(finished) == 1 and finished[0].queued  # type: ignore[attr-defined]
        run = finished[0].run  # type: ignore[attr-defined]
        assert run is not None and run.status in RunStatus.FINISHED
        assert len(engine.list_runs(50)) == before + 1
        # This process never became the writer: the daemon ran it.
        lease = engine.store.lease()
        assert lease is not None and lease.pid == daemon.pid


@pytest.mark.parametrize(
    ("mg_dl", "band"),
    [
        (53, "very_low"),
        (54, "low"),
        (69, "low"),
        (70, "in_range"),
        (180, "in_range"),
        (181, "high"),
        (250, "high"),
        (251, "very_high"),
    ],
)
def test_band_edges_follow_the_consensus(mg_dl: int, band: str) -> None:
    assert band_of(mg_dl).key == band


def test_glucose_text_and_ages() -> None:
    assert glucose_text(180, "mg/dL") == "180"
    assert glucose_text(180, "mmol/L") == "10.0"
    assert glucose_text(70, "mmol/L") == "3.9"
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=30), now) == "just now"
    assert ago(now - timedelta(minutes=4), now) == "4 min ago"
    assert ago(now - timedelta(minutes=125), now) == "2 h 5 min ago"
    assert arrow("FortyFiveDown") == "↘" and arrow("NOT COMPUTABLE") == "?"


def test_band_bar_keeps_a_cell_for_rare_lows() -> None:
    shares = BandShares(100, 0.4, 1.0, 80.6, 15.0, 3.0, 140.0, 40.0, 14)
    cells = bar_cells(shares, 40)
    assert sum(cells) == 40
    assert cells[0] == 1 and cells[1] >= 1
    assert cells[BANDS.index(band_of(100))] == max(cells)


@pytest.mark.anyio
async def test_the_in_process_schedule_retries_a_transient_failure_as_the_daemon_does(tmp_path: Path) -> None:
    """Without a daemon, the dashboard's own scheduled run that fails for a transient reason (the site
    answers 503) shows `retrying` with its next attempt, as the daemon's does; the next attempt, once
    the site is back, succeeds and ends the waiting one as failed."""
    with lake_home(
        tmp_path / "home", behind(1), lambda engine: engine.run_now(), PHLO_RETRY_DELAY_S="30"
    ) as home:
        engine = Engine(home.settings)
        engine.role = "tui"
        recorder = Recorder()
        app = PhloApp(engine, poll_interval=60.0, schedule=False)
        try:
            async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
                await settle(pilot)
                home.server.inject("http_503", times=1000)
                app.start_run(RunTrigger.SCHEDULE)
                await settle(pilot)
                failed = recorder.of(RunFinished)[-1].run  # type: ignore[attr-defined]
                waiting = engine.store.get_run(failed.id)
                assert waiting.status is RunStatus.RETRYING and waiting.summary["attempt"] == 1
                retry_at = app.scheduled_runs().retry_at
                assert retry_at is not None and app.next_run == retry_at
                assert waiting.summary["next_attempt_at"] == retry_at.isoformat()

                home.server.clear_faults()
                app.scheduled_runs().retry_at = retry_at - timedelta(hours=1)  # the retry is due
                app._start_scheduled()
                await settle(pilot)
                retried = recorder.of(RunFinished)[-1].run  # type: ignore[attr-defined]
                assert retried.id != failed.id and retried.status is RunStatus.SUCCEEDED
                assert engine.store.get_run(failed.id).status is RunStatus.FAILED
                assert app.scheduled_runs().retry_at is None
        finally:
            engine.close()


def test_in_process_schedule_is_hourly_at_the_minute_or_every_interval() -> None:
    now = datetime(2026, 6, 1, 12, 4, 30, tzinfo=UTC)
    assert next_scheduled(now, 5, 0) == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)
    assert next_scheduled(now, 4, 0) == datetime(2026, 6, 1, 13, 4, tzinfo=UTC)
    assert next_scheduled(now, 5, 90) == now + timedelta(seconds=90)


def test_run_app_exits_with_a_readable_message_without_a_site(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_app(load_settings()) == 2
    err = capsys.readouterr().err
    assert "phlo-tui: error: no Nightscout site configured" in err
    assert "hint: set NIGHTSCOUT_URL" in err
    assert "Traceback" not in err


@pytest.mark.anyio
async def test_u_switches_units_on_every_page_and_back(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, engine):
        newest = engine.query(
            "select glucose_mg_dl from silver.fct_glucose_readings order by reading_ts desc limit 1"
        ).rows[0][0]
        assert app.screen.query_one("#reading-value", Digits).value == str(newest)
        await pilot.press("u")
        await pilot.pause()
        assert app.units == "mmol/L"
        assert app.screen.query_one("#reading-value", Digits).value == glucose_text(newest, "mmol/L")
        assert str(app.screen.query_one("#reading-trend", Label).render()).startswith("mmol/L")
        bands = app.screen.query_one(BandPanel).render().plain
        # Three days are not enough data, so the panel shows no band legend; its mean is in mmol/L.
        assert "mmol/L" in bands and "mg/dL" not in bands and "70–180" not in bands
        assert "last 24 h · mmol/L" in app.screen.query_one(TracePlot).render().plain  # type: ignore[union-attr]
        assert app.screen.query_one(ScreenTabs).render().plain.endswith("mmol/L")

        # Pages not on screen when the key was pressed draw in the new units when shown.
        await pilot.press("2", "c", "c")
        await settle(pilot)
        trend = app.screen.query_one(TrendChart)
        assert "daily mean mmol/L" in trend.render().plain  # type: ignore[union-attr]
        await pilot.press("u")
        await pilot.pause()
        assert "daily mean mg/dL" in trend.render().plain  # type: ignore[union-attr]
        await pilot.press("1")
        await settle(pilot)
        assert app.screen.query_one("#reading-value", Digits).value == str(newest)


@pytest.mark.anyio
async def test_keys_remapped_by_id_in_the_settings(held: LakeHome) -> None:
    settings = dataclasses.replace(held.settings, keys=(("promote", "P"), ("units", "m")))
    async with dashboard(held, settings) as (app, pilot, _, _):
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("p")
        await pilot.pause()
        assert not isinstance(app.screen, TextModal), "p no longer promotes"
        await pilot.press("P")
        await pilot.pause()
        assert isinstance(app.screen, TextModal) and "still fail" in app.screen.text
        await pilot.press("escape")
        await pilot.press("m")
        await pilot.pause()
        assert app.units == "mmol/L"
        await pilot.press("question_mark")
        await pilot.pause()
        keys = {row[2]: row[0] for row in table_rows(app, "#help-keys")}
        assert keys["promote"] == "P" and keys["units"] == "m"


@pytest.mark.anyio
async def test_on_settings_the_app_paints_then_constructs_the_engine(promoted: LakeHome) -> None:
    """How run_app starts it: the frame first, the engine from a worker, then the polls and the pages."""
    recorder = Recorder()
    app = PhloApp(settings=promoted.settings, poll_interval=60.0, schedule=False)
    try:
        async with app.run_test(size=SIZE, message_hook=recorder) as pilot:
            await settle(pilot)
            assert app.ready and len(recorder.of(EngineReady)) == 1
            assert app.engine.role == "tui"
            ready_at = recorder.messages.index(recorder.of(EngineReady)[0])
            # The Overview and the bar may be read early (tests/test_fastread.py); the polls wait for it.
            assert all(m.early for m in recorder.messages[:ready_at] if isinstance(m, StatusPolled))
            overview = recorder.of(OverviewLoaded)
            assert overview and overview[-1].snapshot.latest is not None  # type: ignore[attr-defined]
            assert app.screen.query_one("#reading-value", Digits).value
            await pilot.press("ctrl+r")  # a key that needs the engine works once it is there
            await settle(pilot)
            assert not any("starting" in n for n in recorder.notifications())
            assert len(recorder.of(StatusPolled)) >= 2
    finally:
        app.close_engine()


@pytest.mark.anyio
async def test_an_engine_that_cannot_start_ends_the_app_with_its_error(tmp_path: Path) -> None:
    """A home that cannot be used fails the engine's construction in the worker: the app exits with the
    error's code and keeps the error for run_app to print on the restored terminal."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    settings = dataclasses.replace(load_settings(demo=True), home=blocked / "home")
    app = PhloApp(settings=settings, schedule=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
    app.close_engine()
    assert isinstance(app.start_error, PhloError)
    assert "cannot use the phlo home" in app.start_error.message
    assert app.return_code == app.start_error.exit_code == 1


def test_an_unknown_key_id_in_the_settings_exits_with_the_known_ids(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dataclasses.replace(load_settings(demo=True), keys=(("promot", "P"),))
    assert run_app(settings) == 2
    err = capsys.readouterr().err
    assert "phlo-tui: error: keys: unknown binding id 'promot'" in err
    assert "promote" in err and "screen.overview" in err
    assert "Traceback" not in err


@pytest.mark.anyio
async def test_t_switches_dark_and_light_and_the_setting_picks_the_first(promoted: LakeHome) -> None:
    settings = dataclasses.replace(promoted.settings, theme="light")
    async with dashboard(promoted, settings) as (app, pilot, _, _):
        assert app.theme == "textual-light"
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "textual-dark"
        assert app.current_theme.dark


@pytest.mark.anyio
async def test_a_fresh_demo_home_fills_itself_with_fourteen_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`phlo-tui --demo` on a fresh home: the simulator is backfilled in a worker, then the overview fills."""
    monkeypatch.setenv("PHLO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PHLO_TIMEZONE", "UTC")
    settings = load_settings(demo=True)
    home = LakeHome(settings, None, {})  # type: ignore[arg-type]
    async with dashboard(home) as (app, _, recorder, engine):
        runs = engine.list_runs(10)
        assert [r.trigger.value for r in runs] == ["backfill"]
        assert runs[0].status is RunStatus.SUCCEEDED
        days = engine.query("select count(distinct reading_date) from silver.fct_glucose_readings").rows[0][0]
        # Fourteen local days up to now; in the first minutes after midnight today has no reading yet.
        assert days in (13, 14)
        assert app.screen.query_one("#reading-value", Digits).value.isdigit()
        bands = app.screen.query_one(BandPanel).render().plain
        # Fourteen days of the simulator's sensor are enough data: the bands and GMI show.
        assert "not enough data" not in bands and "GMI" in bands
        assert any("backfill run succeeded" in n for n in recorder.notifications())
        # The dashboard polled while the backfill ran: the pipeline bar had its progress to draw.
        polled = [m.status for m in recorder.of(StatusPolled)]  # type: ignore[attr-defined]
        assert any(s.active is not None and s.active.trigger.value == "backfill" for s in polled)
    # A second start on the same home does not backfill again, nor says that it does.
    said: list[str | None] = []
    show_status = PhloApp._show_status
    monkeypatch.setattr(PhloApp, "_show_status", lambda app: (said.append(app.busy), show_status(app))[1])
    async with dashboard(home) as (_, _, _, engine):
        assert len(engine.list_runs(10)) == 1
    assert not any(s and "fetching" in s for s in said)


def test_progress_bar_fills_in_eighths() -> None:
    assert progress_bar(0, 10, 8) == " " * 8
    assert progress_bar(10, 10, 8) == "█" * 8
    assert progress_bar(1, 16, 8) == "▌" + " " * 7
    assert len(progress_bar(3, 7, 12)) == 12


@pytest.mark.anyio
async def test_treatment_views_without_treatments_say_so(no_treatments: LakeHome) -> None:
    """A site without treatments: the models build empty tables, and the views say so."""
    async with dashboard(no_treatments) as (app, pilot, _, engine):
        assert engine.query("select count(*) from silver.fct_treatments", "main").rows == [(0,)]
        overview = app.screen
        assert isinstance(overview, OverviewScreen) and overview.snapshot is not None
        assert overview.snapshot.treatments == ()
        await pilot.press("2")
        await settle(pilot)
        charts = app.screen
        assert isinstance(charts, ChartsScreen) and charts.snapshot is not None
        assert charts.snapshot.treatments == () and charts.snapshot.boluses == ()
        for _ in range(4):
            await pilot.press("c")
        assert "no treatments yet" in str(charts.query_one(TreatmentChart).render())
        await pilot.press("c")
        await pilot.pause()
        assert "no treatments yet" in label_text(app, "#bolus-summary")


def treatments_snapshot(charts: ChartsSnapshot) -> ChartsSnapshot:
    """The promoted lake's charts with two days of treatments, as the treatment tables would give them."""
    day = charts.until
    at = datetime(day.year, day.month, day.day, 8, 30)
    return dataclasses.replace(
        charts,
        treatments=(
            DayTreatments(day - timedelta(days=1), 31.5, 180.0, 4, 3),
            DayTreatments(day, 12.0, 60.0, 2, 1),
        ),
        boluses=(
            BolusOutcome("b2", at, "Meal Bolus", 6.0, 60.0, 190.0, 130.0, 60.0, 95.0, 118.0, False),
            BolusOutcome(
                "b1",
                at - timedelta(hours=5),
                "Correction Bolus",
                2.0,
                None,
                240.0,
                150.0,
                90.0,
                120.0,
                62.0,
                True,
            ),
        ),
    )


@pytest.mark.anyio
async def test_bolus_outcomes_and_daily_totals_render_in_the_chosen_units(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, _):
        await pilot.press("2")
        await settle(pilot)
        charts = app.screen
        assert isinstance(charts, ChartsScreen) and charts.snapshot is not None
        charts.post_message(ChartsLoaded(treatments_snapshot(charts.snapshot)))
        for _ in range(4):
            await pilot.press("c")
        await pilot.pause()
        plot = charts.query_one(TreatmentChart).render().plain  # type: ignore[union-attr]
        assert "insulin U/day" in plot and "carbs g/day" in plot
        await pilot.press("c")
        await pilot.pause()
        rows = table_rows(app, "#bolus-rows")
        assert rows[0][:7] == [rows[0][0], "6", "60", "190", "130", "-60", "118"]
        assert rows[1][-1] == "yes" and rows[1][2] == ""
        assert "glucose dropped 75 mg/dL on average" in label_text(app, "#bolus-summary")
        assert "2 boluses" in label_text(app, "#bolus-summary") and "1 followed by a hypo" in label_text(
            app, "#bolus-summary"
        )
        await pilot.press("u")
        await pilot.pause()
        rows = table_rows(app, "#bolus-rows")
        assert rows[0][3:7] == ["10.5", "7.2", "-3.3", "6.5"]
        assert "after = mean of hours 2–3 · change = after − before" in label_text(app, "#bolus-summary")
        assert isinstance(charts.query_one(BolusTable), BolusTable)


@pytest.mark.anyio
async def test_the_trace_marks_boluses_and_carbs(no_treatments: LakeHome) -> None:
    async with dashboard(no_treatments) as (app, pilot, _, _):
        overview = app.screen
        assert isinstance(overview, OverviewScreen) and overview.snapshot is not None
        plain = overview.query_one(TracePlot).render().plain  # type: ignore[union-attr]
        assert "▼" not in plain and "bolus" not in plain
        now = overview.snapshot.now
        overview.snapshot = dataclasses.replace(
            overview.snapshot,
            treatments=(
                TreatmentMark(now - timedelta(hours=3), 5.0, 45.0),
                TreatmentMark(now - timedelta(hours=9), 2.0, None),
            ),
        )
        overview.redraw()
        await pilot.pause()
        plain = overview.query_one(TracePlot).render().plain  # type: ignore[union-attr]
        # Each mark, plus one in the legend of the title.
        assert plain.count("▼") == 2 + 1 and plain.count("◆") == 1 + 1
        assert "▼ bolus ◆ carbs" in plain


async def bolus_table_page(pilot: Pilot[None]) -> ChartsScreen:
    """Charts, on the bolus table, with what it read."""
    await pilot.press("2")
    await settle(pilot)
    for _ in range(5):
        await pilot.press("c")
    await pilot.pause()
    charts = pilot.app.screen
    assert isinstance(charts, ChartsScreen) and charts.snapshot is not None and charts.chart == "bolus-table"
    return charts


def cell_number(cell: str) -> float | None:
    return None if cell in ("", "–") else float(cell)


@pytest.mark.anyio
async def test_bolus_table_shows_the_medication_effectiveness_mart(promoted: LakeHome) -> None:
    """Each row of the bolus table is a row of marts.mrt_medication_effectiveness on main, newest first."""
    async with dashboard(promoted) as (app, pilot, _, engine):
        charts = await bolus_table_page(pilot)
        assert charts.snapshot is not None
        window = {"since": charts.snapshot.since, "until": charts.snapshot.until}
        mart = engine.query(
            "select * from marts.mrt_medication_effectiveness where reading_date between $since and $until "
            "order by bolus_local_ts desc",
            "main",
            params=window,
        ).records()
        rows = table_rows(app, "#bolus-rows")
        assert len(mart) >= 3 and len(rows) == len(mart)
        for row, bolus in zip(rows, mart, strict=True):
            at, units, carbs, before, after, change, lowest, to_low, hypo = row
            assert at == bolus["bolus_local_ts"].strftime("%m-%d %H:%M")
            assert cell_number(units) == bolus["insulin_units"]
            assert cell_number(carbs) == bolus["carbs_g"]
            for cell, column in (
                (before, "glucose_before"),
                (after, "glucose_after"),
                (change, "glucose_change"),
                (lowest, "min_glucose_after"),
                (to_low, "minutes_to_min_after"),
            ):
                expected = bolus[column] if column != "glucose_change" else bolus["glucose_reduction"]
                if column == "glucose_change" and expected is not None:
                    expected = -expected  # the table shows after − before: a rise is +
                shown = cell_number(cell)
                assert (shown is None) == (expected is None), column
                assert expected is None or abs(shown - float(expected)) <= 0.5, column  # type: ignore[operator]
            assert (hypo == "yes") == bool(bolus["hypo_within_4h"])
        summary = label_text(app, "#bolus-summary")
        hypos = sum(1 for b in mart if b["hypo_within_4h"])
        assert f"{len(mart)} boluses" in summary and f"{hypos} followed by a hypo" in summary

        await pilot.press("u")
        await pilot.pause()
        mmol = table_rows(app, "#bolus-rows")
        assert "mmol/L" in label_text(app, "#bolus-summary")
        for row, bolus in zip(mmol, mart, strict=True):
            assert row[:3] == rows[mart.index(bolus)][:3] and row[7:] == rows[mart.index(bolus)][7:]
            for cell, column in ((row[3], "glucose_before"), (row[6], "min_glucose_after")):
                shown = cell_number(cell)
                if bolus[column] is None:
                    assert shown is None
                else:
                    assert shown is not None and abs(shown - float(bolus[column]) / 18.016) <= 0.051, column


@pytest.mark.anyio
async def test_daily_treatment_totals_are_the_gold_table(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (_, pilot, _, engine):
        charts = await bolus_table_page(pilot)
        assert charts.snapshot is not None
        gold = engine.query(
            "select reading_date, total_insulin_units, total_carbs_g, bolus_count, carb_entry_count "
            "from gold.fct_daily_treatment_totals where reading_date between $since and $until "
            "order by reading_date",
            "main",
            params={"since": charts.snapshot.since, "until": charts.snapshot.until},
        ).rows
        assert len(gold) >= 3
        shown = [
            (d.day, d.insulin_units, d.carbs_g, d.boluses, d.carb_entries) for d in charts.snapshot.treatments
        ]
        assert shown == [(day, float(u), float(c), b, e) for day, u, c, b, e in gold]
        await pilot.press("c")  # around to TIR, then on to the treatment chart
        for _ in range(4):
            await pilot.press("c")
        await pilot.pause()
        assert charts.chart == "treatment-chart"
        plot = charts.query_one(TreatmentChart).render().plain  # type: ignore[union-attr]
        assert "insulin U/day" in plot and "█" in plot


@pytest.mark.anyio
async def test_the_trace_marks_each_bolus_at_its_time(promoted: LakeHome) -> None:
    """A ▼ over the column of each bolus of the last 24 h (silver.fct_treatments on main)."""
    async with dashboard(promoted) as (app, _, _, engine):
        overview = app.screen
        assert isinstance(overview, OverviewScreen) and overview.snapshot is not None
        now = overview.snapshot.now
        boluses = [
            ts
            for (ts,) in engine.query(
                "select treatment_ts from silver.fct_treatments where is_bolus and treatment_ts >= $since "
                "and treatment_ts <= $now order by treatment_ts",
                "main",
                params={"since": now - timedelta(hours=24), "now": now},
            ).rows
        ]
        assert boluses
        lines = overview.query_one(TracePlot).render().plain.splitlines()  # type: ignore[union-attr]
        frame = next(line for line in lines if "┌" in line)
        left, right = frame.index("┌") + 1, frame.index("┐") - 1
        marked = {i for line in lines if "│" in line for i, ch in enumerate(line) if ch == "▼"}
        width = right - left
        expected = {left + round(width * ((ts - now).total_seconds() / 3600 + 24) / 24) for ts in boluses}
        # Each bolus has its marker in its column (±1 for the plot's rounding), and no marker is elsewhere.
        assert all(any(abs(col - m) <= 1 for m in marked) for col in expected), (expected, marked)
        assert all(any(abs(col - m) <= 1 for m in expected) for col in marked), (expected, marked)


@pytest.mark.anyio
async def test_a_closed_loop_s_automatic_insulin_share_shows_above_the_boluses(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, _):
        await pilot.press("2")
        await settle(pilot)
        charts = app.screen
        assert isinstance(charts, ChartsScreen) and charts.snapshot is not None
        plain = treatments_snapshot(charts.snapshot)
        loop = dataclasses.replace(
            plain,
            treatments=tuple(
                dataclasses.replace(d, automatic_units=units)
                for d, units in zip(plain.treatments, (6.3, 2.4), strict=True)
            ),
        )
        charts.post_message(ChartsLoaded(loop))
        for _ in range(5):
            await pilot.press("c")
        await pilot.pause()
        summary = label_text(app, "#bolus-summary")
        # 6.3 + 2.4 of 31.5 + 12.0 U: a fifth, by hand.
        assert "20% of the 43.5 U automatic (SMBs, loop boluses)" in summary
        assert "after = mean of hours 2–3" in summary and "2 boluses" in summary
        charts.post_message(ChartsLoaded(plain))  # no automatic insulin: no such line
        await pilot.pause()
        await pilot.pause()
        assert "automatic" not in label_text(app, "#bolus-summary")


@pytest.mark.anyio
async def test_basal_and_the_total_daily_dose_show_above_the_boluses(promoted: LakeHome) -> None:
    async with dashboard(promoted) as (app, pilot, _, _):
        await pilot.press("2")
        await settle(pilot)
        charts = app.screen
        assert isinstance(charts, ChartsScreen) and charts.snapshot is not None
        plain = treatments_snapshot(charts.snapshot)
        with_basal = dataclasses.replace(
            plain,
            treatments=tuple(
                dataclasses.replace(d, basal_units=units)
                for d, units in zip(plain.treatments, (20.0, 18.0), strict=True)
            ),
        )
        charts.post_message(ChartsLoaded(with_basal))
        for _ in range(5):
            await pilot.press("c")
        await pilot.pause()
        summary = label_text(app, "#bolus-summary")
        # Bolus (31.5 + 12.0) / 2 = 21.75 U, basal (20 + 18) / 2 = 19 U a day: 40.75 U, 47 % basal.
        assert "per day: bolus 21.8 U + basal 19.0 U = 40.8 U total (47% basal, 2 d)" in summary
        charts.post_message(ChartsLoaded(plain))  # no profile: basal unknown, no such line
        await pilot.pause()
        await pilot.pause()
        assert "basal" not in label_text(app, "#bolus-summary")
