"""The phlo-tui dashboard: pages switched by number keys over the engine facade, every read in a worker."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import threading
from collections.abc import Iterable
from datetime import date, datetime
from functools import partial
from typing import TYPE_CHECKING

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from engine.api.commands import setup_logging
from engine.api.pages import PipelineStatus, load_status
from engine.api.pages.status import load_early_status
from engine.clock import Clock, clock_from_env
from engine.config import Settings, check_ready, load_settings
from engine.errors import PhloError, PromotionError
from engine.runs.records import RunStatus
from phlo_tui.commands import CommandApp, next_scheduled
from phlo_tui.keys import APP_BINDINGS, binding_ids, check_keymap, key_rows
from phlo_tui.messages import EngineReady, PromotionFinished, RunFinished, StatusPolled
from phlo_tui.report_key import ReportExported, period_on_screen
from phlo_tui.screens.base import PhloScreen
from phlo_tui.screens.branches import BranchesScreen
from phlo_tui.screens.charts import ChartsScreen
from phlo_tui.screens.confirm_promote import ConfirmPromote
from phlo_tui.screens.help import HelpScreen
from phlo_tui.screens.overview import OverviewScreen
from phlo_tui.screens.quality import QualityScreen
from phlo_tui.screens.runs import RunsScreen
from phlo_tui.screens.sql import SqlScreen
from phlo_tui.screens.text_modal import TextModal

if TYPE_CHECKING:
    from engine.api.facade import Engine
    from engine.api.schedule import ScheduledRuns

__all__ = [
    "EngineReady",
    "PhloApp",
    "PromotionFinished",
    "RunFinished",
    "StatusPolled",
    "freeze_heap",
    "next_scheduled",
    "run_app",
]

log = logging.getLogger(__name__)

# Failures the user must read in full (and may copy) get a modal; the rest a notification.
MODAL_GROUPS = frozenset({"command", "sql"})
FINISHED_STATES = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)
ERROR_TITLES = {
    "poll": "cannot read the run store",
    "schedule": "cannot record the next scheduled run",
    "command": "the command failed",
    "sql": "the query failed",
    "overview": "cannot read the overview",
    "charts": "cannot read the charts",
    "runs": "cannot read the runs",
    "branches": "cannot compute the branch diff",
    "quality": "cannot read the quality results",
    "report": "cannot write the report",
}
THEMES = {"dark": "textual-dark", "light": "textual-light"}
EARLY_READ_WAIT_S = 2.0
"""The longest the engine's import waits for the Overview's early read (engine.api.fastread)."""
ACTIVE_POLL_S = 0.5
"""How often to poll while a run is in progress, so its progress bar moves."""


PAGES: dict[str, type[PhloScreen]] = {
    "overview": OverviewScreen,
    "charts": ChartsScreen,
    "runs": RunsScreen,
    "branches": BranchesScreen,
    "quality": QualityScreen,
    "sql": SqlScreen,
}
"""The pages by mode name, in the order of their number keys."""


class PhloApp(CommandApp):
    CSS_PATH = "app.tcss"
    TITLE = "phlo-tui"
    MODES = dict(PAGES)
    DEFAULT_MODE = "overview"
    BINDINGS = APP_BINDINGS

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        settings: Settings | None = None,
        poll_interval: float = 3.0,
        clock: Clock | None = None,
        schedule: bool = True,
    ) -> None:
        """On an `engine` (tests, benches), or on `settings`: then the app paints first and constructs the
        engine in a worker (importing it takes seconds); `EngineReady` starts the polls and the pages.
        `clock` is data time (engine.clock): the engine's, else $PHLO_NOW or the wall clock."""
        super().__init__()
        if engine is not None:
            self.engine = engine
            settings = engine.settings
        if settings is None:
            raise TypeError("PhloApp needs an engine or settings")
        self.settings = settings
        self.ready = engine is not None
        """Whether self.engine exists: until then the pages show their frame and keys that need it wait."""
        self.start_error: BaseException | None = None
        """Why the engine could not be constructed: run_app reports it once the terminal is restored."""
        self._loaded: Engine | None = None
        self.early_read = threading.Event()
        """Set when the Overview's early read is done: the engine's import waits for it (both need the GIL)."""
        self.early_missed = False
        """Whether the Overview's first read found no recorded files: the engine records them once there."""
        self._load_started = threading.Event()
        self._load_settled = threading.Event()
        self.poll_interval = poll_interval
        self.clock: Clock = clock or (engine.clock if engine is not None else clock_from_env())
        self.schedule = schedule and (settings.demo or settings.nightscout_url is not None)
        """Whether runs start on the hour; never without a site to fetch from (a home filled by import)."""
        self.units = settings.units
        """mg/dL or mmol/L: starts from the settings, `u` switches it on every page."""
        self.pipeline: PipelineStatus | None = None
        self.busy: str | None = None
        """A command this app started that has not finished: shown in the pipeline bar."""
        self.next_run: datetime | None = None
        self._poll_timer: Timer | None = None
        self._polling = False
        self._poll_again = False
        self._schedule_timer: Timer | None = None
        self._scheduled_runs: ScheduledRuns | None = None
        self._reported: set[str] = set()
        self._poll_error: str | None = None
        check_keymap(settings.keymap, known_binding_ids())
        self.set_keymap(settings.keymap)
        self.theme = THEMES[settings.theme]

    @property
    def zone(self) -> str:
        return self.settings.timezone

    @property
    def note(self) -> str:
        return f"{'demo · ' if self.settings.demo else ''}{self.units}"

    def on_mount(self) -> None:
        if self.ready:
            self.start()
        else:
            self.load_engine()
            self.call_after_refresh(self.read_early_status)

    @work(thread=True, exclusive=True, exit_on_error=False, group="early")
    def read_early_status(self) -> None:
        """The pipeline bar from the run store while the engine imports; its polls take over."""
        status = load_early_status(self.settings, self.clock())
        if status is not None and not self.ready:
            self.post_message(StatusPolled(status, early=True))

    def start(self) -> None:
        """The engine is there: schedule, fill a fresh demo home, poll."""
        if self.schedule:
            self._schedule_next_run()
        if self.settings.demo:
            self.fill_demo()
        self.poll_now()

    # the engine: imported and constructed after the first paint

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine")
    def load_engine(self) -> None:
        self._load_started.set()
        try:
            # The early read takes a few hundred ms alone, several times that beside this import.
            self.early_read.wait(timeout=EARLY_READ_WAIT_S)
            from engine.api.facade import Engine  # pyiceberg, pandas, pyarrow: seconds

            if get_current_worker().is_cancelled:
                return  # q came first: an import cannot be stopped, the construction can be skipped
            engine = Engine(self.settings, clock=self.clock)
            engine.role = "tui"
            self._loaded = engine
        finally:
            self._load_settled.set()
        self.post_message(EngineReady(engine))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine = message.engine
        self.ready = True
        freeze_heap()  # now: the engine's modules and objects live as long as the app
        self.start()
        if isinstance(self.screen, PhloScreen):
            self.screen.reload()
        if self.early_missed:
            self.record_early_files()

    @work(thread=True, exclusive=True, exit_on_error=False, group="record")
    def record_early_files(self) -> None:
        """So that the next start reads the Overview early (a home written by an older version)."""
        self.engine.record_early_files()

    def close_engine(self) -> None:
        """Close the engine the worker constructed, waiting for it when q came first (the lease)."""
        if not self._load_started.is_set():
            return
        if self._load_settled.wait(timeout=120) and self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def engine_started(self) -> bool:
        """Whether the engine is there; if not, says so (for keys that need it)."""
        if not self.ready:
            self.notify("starting…", severity="warning", timeout=2)
        return self.ready

    # polling: a worker reads, the main thread renders, then one timer schedules the next read

    def poll_now(self) -> None:
        """Read the run store now, or right after the read in flight: never two at once."""
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if not self.ready:
            return  # EngineReady starts the polls
        if self._polling:
            self._poll_again = True
            return
        self._polling = True
        self.poll_status()

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def poll_status(self) -> None:
        status = load_status(self.engine, self.clock(), self.next_run)
        if not get_current_worker().is_cancelled:
            self.post_message(StatusPolled(status))

    def on_status_polled(self, message: StatusPolled) -> None:
        if message.early and self.pipeline is not None:
            return  # the engine's poll came first
        previous, self.pipeline = self.pipeline, message.status
        self._poll_error = None
        if previous is not None:
            self._report_finished_runs(previous, message.status)
        else:
            self._reported.update(r.id for r in message.status.runs)
        if isinstance(self.screen, PhloScreen):
            self.screen.status_polled(previous, message.status)

    def _report_finished_runs(self, previous: PipelineStatus, status: PipelineStatus) -> None:
        """Runs this app did not start (the daemon's schedule) are announced when they finish."""
        for run in status.runs:
            if run.status in RunStatus.FINISHED and run.id not in self._reported:
                self._reported.add(run.id)
                self.notify_run(run)

    def _next_poll_delay(self) -> float:
        running = self.busy is not None or (self.pipeline is not None and self.pipeline.active is not None)
        return min(self.poll_interval, ACTIVE_POLL_S) if running else self.poll_interval

    # one place for every worker's end, the app's and the pages'

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_state_changed(event)

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in FINISHED_STATES:
            return
        if worker.group == "poll" and worker.node is self:
            self._polling = False
            if self._poll_again:
                self._poll_again = False
                self.poll_now()
            else:
                self._poll_timer = self.set_timer(self._next_poll_delay(), self.poll_now)
        if worker.group == "command" and worker.node is self:
            self.busy = None
            self._show_status()
        if event.state is WorkerState.ERROR:
            if worker.group == "engine" and worker.node is self:
                self.start_error = worker.error
                code = worker.error.exit_code if isinstance(worker.error, PhloError) else 1
                self.exit(return_code=code)
                return
            self.report_error(worker)

    def report_error(self, worker: Worker[object]) -> None:
        error = worker.error
        if isinstance(error, PhloError):
            message, hint = error.message, error.hint
        else:
            log.error("worker %s failed", worker.name, exc_info=error)
            message, hint = f"{type(error).__name__}: {error}", "an internal error; see the log"
        title = (
            "Promotion refused"
            if isinstance(error, PromotionError)
            else ERROR_TITLES.get(worker.group, "failed")
        )
        if worker.group in MODAL_GROUPS:
            self.push_screen(TextModal(title, f"{message}\n\n{hint}".strip(), error=True))
        elif worker.group == "poll":
            if message != self._poll_error:
                self._poll_error = message
                self.notify(message, title=title, severity="error")
        else:
            self.notify(f"{message}\n{hint}".strip(), title=title, severity="error", timeout=8)

    def _show_status(self) -> None:
        if isinstance(self.screen, PhloScreen):
            self.screen.show_status()

    # keys, help and the command palette

    def action_refresh(self) -> None:
        if not self.engine_started():
            return
        self.poll_now()
        if isinstance(self.screen, PhloScreen):
            self.screen.reload()

    def action_toggle_units(self) -> None:
        """Switch mg/dL ↔ mmol/L: the page on screen redraws now, the others when they are shown."""
        self.units = "mmol/L" if self.units == "mg/dL" else "mg/dL"
        if isinstance(self.screen, PhloScreen):
            self.screen.units_changed()

    def action_export_report(self) -> None:
        """The clinic report of the period on screen, written under PHLO_HOME/reports by a worker."""
        if self.engine_started():
            self.export_report(*period_on_screen(self.screen, self.clock(), self.settings.zone))

    @work(thread=True, exclusive=True, exit_on_error=False, group="report")
    def export_report(self, since: date, until: date, branch: str) -> None:
        from phlo_tui.report import export_on_screen

        result = export_on_screen(self.engine, since, until, branch, self.units, self.clock())
        self.post_message(ReportExported(result))

    def on_report_exported(self, message: ReportExported) -> None:
        result = message.result
        enough = "" if result.sufficient else " (not enough data for the consensus: it says so on the page)"
        self.notify(f"{', '.join(map(str, result.paths))}{enough}", title="Report written", timeout=10)

    def action_toggle_theme(self) -> None:
        self.theme = THEMES["light"] if self.theme == THEMES["dark"] else THEMES["dark"]

    def action_help(self) -> None:
        self.push_screen(HelpScreen(key_rows(self.screen)))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The app's keys and every page's, before Textual's own: a page's command opens its page first
        (so that "prom" finds promotion from any page)."""
        here: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if binding.description and binding.id and binding.action not in ("quit", "command_palette"):
                here.add(binding.id)
                yield SystemCommand(
                    binding.tooltip or binding.description,
                    f"key {binding.key_display or key} · {binding.id}",
                    partial(self.run_action, binding.action, active.node),
                )
        for mode, page in PAGES.items():
            for other in page.BINDINGS:
                if isinstance(other, Binding) and other.id and other.id not in here and other.show:
                    key = self.settings.keymap.get(other.id, other.key_display or other.key)
                    yield SystemCommand(
                        other.tooltip or other.description,
                        f"key {key} on the {page.PAGE.capitalize()} page · {other.id}",
                        partial(self.run_on_page, mode, other.action),
                    )
        yield from super().get_system_commands(screen)

    async def run_on_page(self, mode: str, action: str) -> None:
        await self.switch_mode(mode)
        await self.run_action(action, self.screen)

    async def action_quit(self) -> None:
        if self.busy is not None or (self.pipeline is not None and self.pipeline.active is not None):
            # An in-process run stops at its next step boundary; the next run picks up from there.
            self.engine.stop_requested.set()
        self.exit()


def known_binding_ids() -> set[str]:
    """The ids `[keys]` in the config may remap: the app's, its pages' and its dialogs'."""
    return binding_ids([PhloApp, *PAGES.values(), ConfirmPromote, TextModal, HelpScreen])


def freeze_heap() -> None:
    """Keep what is alive at start-up (modules, the engine) out of the garbage collector's full passes.

    A full collection holds the GIL while it scans every tracked object: on a backfill's heap that
    paused the UI for ~200 ms, its longest stall. What exists before the dashboard starts lives as long
    as it, so it is collected once here and frozen; the collections during runs then scan only what
    came after."""
    gc.collect()
    gc.freeze()


def check_startable(settings: Settings) -> None:
    """Raise PhloError when the dashboard has nothing to show and no way to get it: an empty home without
    a site. A home filled by `import` opens without a site (a run then says that it needs one)."""
    if not settings.runs_db.exists():
        check_ready(settings)
    check_keymap(settings.keymap, known_binding_ids())


def run_app(settings: Settings) -> int:
    """The dashboard on `settings`' home; returns the exit code. Bad configuration exits with its message.

    The app paints before the engine is imported (seconds of pyiceberg, pandas, pyarrow); an error while
    constructing it (the home, the lease) ends the app and is printed here, on the restored terminal."""
    try:
        check_startable(settings)
    except PhloError as e:
        return print_error(e)
    # The engine logs to logs/phlo-tui.log (the Runs page tails it), never onto the dashboard.
    quiet = open(os.devnull, "w")  # noqa: SIM115 - the log's stream for the life of the process
    try:
        setup_logging(settings.logs_dir, stream=quiet)
    except OSError:
        # An unusable home: the engine's construction says so with a hint and the app exits with it.
        setup_logging(None, stream=quiet)
    app = PhloApp(settings=settings)
    try:
        app.run()
    finally:
        app.close_engine()
    if isinstance(app.start_error, PhloError):
        return print_error(app.start_error)
    if app.start_error is not None:
        raise app.start_error
    return app.return_code or 0


def print_error(e: PhloError) -> int:
    print(f"phlo-tui: error: {e.message}", file=sys.stderr)
    if e.hint:
        print(f"  hint: {e.hint}", file=sys.stderr)
    return e.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phlo_tui.app", description="the phlo-tui dashboard")
    parser.add_argument("--demo", action="store_true", help="the built-in simulator and the demo home")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(demo=args.demo)
    except PhloError as e:
        print(f"phlo-tui: error: {e.message}\n  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    return run_app(settings)


if __name__ == "__main__":
    sys.exit(main())
