"""The phlo-tui dashboard: pages switched by number keys over the engine facade, every read in a worker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from engine.config import Settings, check_ready, load_settings
from engine.errors import PhloError, PromotionError
from engine.facade import Engine
from engine.logs import setup_logging
from engine.runstore import RunRecord, RunStatus, RunTrigger
from phlo_tui.screens.base import PhloScreen
from phlo_tui.screens.branches import BranchesScreen
from phlo_tui.screens.charts import ChartsScreen
from phlo_tui.screens.help import HelpScreen, KeyRow
from phlo_tui.screens.overview import OverviewScreen
from phlo_tui.screens.quality import QualityScreen
from phlo_tui.screens.runs import RunsScreen
from phlo_tui.screens.sql import SqlScreen
from phlo_tui.screens.text_modal import TextModal
from phlo_tui.snapshot import PipelineStatus, load_status

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SCREENS = Binding.Group("Screens", compact=True)
# Failures the user must read in full (and may copy) get a modal; the rest a notification.
MODAL_GROUPS = frozenset({"command", "sql"})
FINISHED_STATES = (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED)
ERROR_TITLES = {
    "poll": "cannot read the run store",
    "command": "the command failed",
    "sql": "the query failed",
    "overview": "cannot read the overview",
    "charts": "cannot read the charts",
    "runs": "cannot read the runs",
    "branches": "cannot compute the branch diff",
    "quality": "cannot read the quality results",
}


class StatusPolled(Message):
    def __init__(self, status: PipelineStatus) -> None:
        super().__init__()
        self.status = status


class RunFinished(Message):
    def __init__(self, run: RunRecord | None, queued: bool) -> None:
        super().__init__()
        self.run = run
        self.queued = queued


class PromotionFinished(Message):
    def __init__(self, promotion_id: int | None) -> None:
        super().__init__()
        self.promotion_id = promotion_id


def wall_clock() -> datetime:
    return datetime.now(UTC)


def next_scheduled(now: datetime, minute: int, interval_s: int) -> datetime:
    """When the daemon's schedule would fire next: every `interval_s`, or hourly at `:minute`."""
    if interval_s:
        return now + timedelta(seconds=interval_s)
    slot = now.replace(minute=minute, second=0, microsecond=0)
    return slot if slot > now else slot + timedelta(hours=1)


class PhloApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "phlo-tui"
    MODES = {
        "overview": OverviewScreen,
        "charts": ChartsScreen,
        "runs": RunsScreen,
        "branches": BranchesScreen,
        "quality": QualityScreen,
        "sql": SqlScreen,
    }
    DEFAULT_MODE = "overview"
    BINDINGS = [
        Binding("1", "switch_mode('overview')", "Overview", id="screen.overview", group=SCREENS),
        Binding("2", "switch_mode('charts')", "Charts", id="screen.charts", group=SCREENS),
        Binding("3", "switch_mode('runs')", "Runs", id="screen.runs", group=SCREENS),
        Binding("4", "switch_mode('branches')", "Branches", id="screen.branches", group=SCREENS),
        Binding("5", "switch_mode('quality')", "Quality", id="screen.quality", group=SCREENS),
        Binding("6", "switch_mode('sql')", "SQL", id="screen.sql", group=SCREENS),
        Binding("r", "run_now", "Run", id="run"),
        Binding("u", "refresh", "Refresh", id="refresh", show=False),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        poll_interval: float = 3.0,
        clock: Clock = wall_clock,
        schedule: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.poll_interval = poll_interval
        self.clock = clock
        self.schedule = schedule
        self.pipeline: PipelineStatus | None = None
        self.busy: str | None = None
        """A command this app started that has not finished: shown in the pipeline bar."""
        self.next_run: datetime | None = None
        self._poll_timer: Timer | None = None
        self._polling = False
        self._poll_again = False
        self._schedule_timer: Timer | None = None
        self._reported: set[str] = set()
        self._poll_error: str | None = None

    @property
    def units(self) -> str:
        return self.engine.settings.units

    @property
    def zone(self) -> str:
        return self.engine.settings.timezone

    @property
    def note(self) -> str:
        return f"{'demo · ' if self.engine.settings.demo else ''}{self.units}"

    def on_mount(self) -> None:
        if self.schedule:
            self._schedule_next_run()
        self.poll_now()

    # polling: a worker reads, the main thread renders, then one timer schedules the next read

    def poll_now(self) -> None:
        """Read the run store now, or right after the read in flight: never two at once."""
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
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
                self._notify_run(run)

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
                self._poll_timer = self.set_timer(self.poll_interval, self.poll_now)
        if worker.group == "command" and worker.node is self:
            self.busy = None
            self._show_status()
        if event.state is WorkerState.ERROR:
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

    # commands: through the daemon when one runs, else in this process

    def command_refused(self) -> bool:
        """One command at a time: say so when this app or the daemon is busy with one."""
        if self.busy is not None:
            self.notify(f"busy: {self.busy}", severity="warning")
            return True
        if self.pipeline is not None and self.pipeline.active is not None:
            self.notify("a run is in progress; wait for it to finish", severity="warning")
            return True
        return False

    def action_run_now(self) -> None:
        if not self.command_refused():
            self.start_run(RunTrigger.MANUAL)

    def start_run(self, trigger: RunTrigger) -> None:
        self.busy = f"starting a {trigger.value} run"
        self._show_status()
        self.run_pipeline(trigger)
        # The run store shows the run's steps as it goes: poll soon rather than at the next tick.
        self.set_timer(0.5, self.poll_now)

    @work(thread=True, exclusive=True, exit_on_error=False, group="command")
    def run_pipeline(self, trigger: RunTrigger) -> None:
        if self.engine.daemon() is not None:
            command = self.engine.submit("run", {"trigger": trigger.value})
            result = command.result or {}
            if result.get("error"):
                raise PhloError(str(result["error"]), str(result.get("hint") or ""))
            run = next((r for r in self.engine.list_runs(10) if r.id == command.run_id), None)
            self.post_message(RunFinished(run, queued=True))
            return
        self.post_message(RunFinished(self.engine.run_now(trigger), queued=False))

    def on_run_finished(self, message: RunFinished) -> None:
        if message.run is not None:
            self._reported.add(message.run.id)
            self._notify_run(message.run)
        self.poll_now()

    def _notify_run(self, run: RunRecord) -> None:
        s = run.summary
        text = f"fetched {s.get('fetched', 0)}, stored {s.get('stored', 0)}, quarantined {s.get('quarantined', 0)}"
        if run.status is RunStatus.SUCCEEDED:
            self.notify(text, title=f"{run.trigger.value} run succeeded")
        elif run.status is RunStatus.HELD:
            self.notify(f"{run.error}\n{text}", title="run held by a quality gate", severity="warning")
        else:
            self.notify(
                f"{run.error}\n{run.hint or ''}".strip(), title="run failed", severity="error", timeout=10
            )

    def promote(self) -> None:
        """Promote dev to main (the page asked the user first)."""
        if self.command_refused():
            return
        self.busy = "promoting dev → main"
        self._show_status()
        self.promote_branches()

    @work(thread=True, exclusive=True, exit_on_error=False, group="command")
    def promote_branches(self) -> None:
        if self.engine.daemon() is not None:
            result = self.engine.submit("promote", {}).result or {}
            if result.get("error"):
                raise PromotionError(str(result["error"]), str(result.get("hint") or ""))
            promotion = result.get("promotion")
            self.post_message(PromotionFinished(promotion["id"] if promotion else None))
            return
        record = self.engine.promote()
        self.post_message(PromotionFinished(record.id if record else None))

    def on_promotion_finished(self, message: PromotionFinished) -> None:
        if message.promotion_id is None:
            self.notify("nothing to promote: main already equals dev")
        else:
            self.notify(f"promotion {message.promotion_id}: main now equals dev", title="promoted")
        self.poll_now()

    # the in-process schedule, like the daemon's; skipped while a daemon owns the home

    def _schedule_next_run(self) -> None:
        settings = self.engine.settings
        now = self.clock()
        self.next_run = next_scheduled(now, settings.schedule_minute, settings.schedule_interval_seconds)
        self.engine.set_next_run(self.next_run)
        self._schedule_timer = self.set_timer(
            (self.next_run - now).total_seconds(), self._scheduled_run, name="schedule"
        )

    def _scheduled_run(self) -> None:
        self._schedule_next_run()
        attached = self.pipeline is not None and self.pipeline.daemon is not None
        running = self.pipeline is not None and self.pipeline.active is not None
        if not attached and not running and self.busy is None:
            self.start_run(RunTrigger.SCHEDULE)

    # keys, help and the command palette

    def action_refresh(self) -> None:
        self.poll_now()
        if isinstance(self.screen, PhloScreen):
            self.screen.reload()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_rows(self.screen)))

    def key_rows(self, screen: Screen[object]) -> list[KeyRow]:
        rows: list[KeyRow] = []
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if binding.description and not binding.system:
                rows.append((binding.key_display or key, binding.description, binding.id or ""))
        return rows

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if binding.description and binding.id and binding.action not in ("quit", "command_palette"):
                yield SystemCommand(
                    binding.description,
                    f"key {binding.key_display or key} · {binding.id}",
                    partial(self.run_action, binding.action, active.node),
                )

    async def action_quit(self) -> None:
        if self.busy is not None or (self.pipeline is not None and self.pipeline.active is not None):
            # An in-process run stops at its next step boundary; the next run picks up from there.
            self.engine.stop_requested.set()
        self.exit()


def run_app(settings: Settings) -> int:
    """The dashboard on `settings`' home; returns the exit code. Bad configuration exits with its message."""
    try:
        check_ready(settings)
        engine = Engine(settings)
    except PhloError as e:
        print(f"phlo-tui: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    # The engine logs to logs/phlo-tui.log (the Runs page tails it), never onto the dashboard.
    quiet = open(os.devnull, "w")  # noqa: SIM115 - the log's stream for the life of the process
    setup_logging(settings.logs_dir, stream=quiet)
    with engine:
        engine.role = "tui"
        PhloApp(engine).run()
    return 0


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
