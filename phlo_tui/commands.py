"""The commands the dashboard starts: a run (by key or on the in-process schedule), a promotion, the demo's
first backfill; through the daemon when one owns the home, else in this process, in `command` workers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.timer import Timer

from engine.api.pages import PipelineStatus
from engine.clock import wall_clock
from engine.runs.records import CommandKind, RunRecord, RunStatus, RunTrigger
from phlo_tui.messages import PromotionFinished, RunFinished

if TYPE_CHECKING:
    from engine.api.facade import Engine
    from engine.api.schedule import ScheduledRuns
    from engine.config import Settings

DEMO_DAYS = 14


def next_scheduled(now: datetime, minute: int, interval_s: int) -> datetime:
    """When the daemon's schedule would fire next: every `interval_s`, or hourly at `:minute`."""
    if interval_s:
        return now + timedelta(seconds=interval_s)
    slot = now.replace(minute=minute, second=0, microsecond=0)
    return slot if slot > now else slot + timedelta(hours=1)


class CommandApp(App[None]):
    """The command half of PhloApp: it starts commands; PhloApp polls and renders what they did."""

    engine: Engine
    settings: Settings
    pipeline: PipelineStatus | None
    busy: str | None
    _reported: set[str]
    clock: Callable[[], datetime]
    schedule: bool
    next_run: datetime | None
    _schedule_timer: Timer | None
    _scheduled_runs: ScheduledRuns | None

    def poll_now(self) -> None:
        raise NotImplementedError

    def _show_status(self) -> None:
        raise NotImplementedError

    def engine_started(self) -> bool:
        raise NotImplementedError

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
        if self.engine_started() and not self.command_refused():
            self.start_run(RunTrigger.MANUAL)

    def start_run(self, trigger: RunTrigger) -> None:
        self.busy = f"starting a {trigger.value} run"
        self._show_status()
        self.run_pipeline(trigger)
        # The run store shows the run's steps as it goes: poll soon rather than at the next tick.
        self.set_timer(0.5, self.poll_now)

    @work(thread=True, exclusive=True, exit_on_error=False, group="command")
    def run_pipeline(self, trigger: RunTrigger) -> None:
        if trigger is RunTrigger.SCHEDULE and self.engine.daemon() is None:
            # The in-process schedule: the daemon's runs and retry policy (engine.api.schedule).
            scheduled = self.scheduled_runs()
            run = scheduled.run()
            if scheduled.retry_at is not None:
                self.call_from_thread(self._schedule_retry, scheduled.retry_at)
            self.post_message(RunFinished(run, queued=False))
            return
        outcome = self.engine.execute(CommandKind.RUN, {"trigger": trigger.value})
        self.post_message(RunFinished(outcome.run, queued=outcome.queued_to is not None))

    def scheduled_runs(self) -> ScheduledRuns:
        """Made in a worker on first use: engine.api.schedule imports the facade."""
        if self._scheduled_runs is None:
            from engine.api.schedule import ScheduledRuns

            self._scheduled_runs = ScheduledRuns(self.engine)
        return self._scheduled_runs

    def fill_demo(self) -> None:
        """A fresh demo home gets 14 days of simulated history at once, shown as a run in progress."""
        self.backfill_demo()

    def _demo_fetching(self) -> None:
        self.busy = f"demo: fetching {DEMO_DAYS} days of history"
        self._show_status()
        self.set_timer(0.3, self.poll_now)

    @work(thread=True, exclusive=True, exit_on_error=False, group="command")
    def backfill_demo(self) -> None:
        engine = self.engine
        if engine.list_runs(1) or engine.daemon() is not None:
            return  # not fresh, or a daemon owns the home and catches up by itself
        # Said only now: on a home that has runs nothing is fetched, and the bar must not say so.
        self.call_from_thread(self._demo_fetching)
        today = self.clock().astimezone(engine.settings.zone).date()
        since = today - timedelta(days=DEMO_DAYS - 1)
        self.post_message(RunFinished(engine.backfill(since.isoformat(), today.isoformat()), queued=False))

    # the in-process schedule, like the daemon's; skipped while a daemon owns the home

    def _schedule_next_run(self) -> None:
        settings = self.settings
        now = wall_clock()  # process time, as the daemon's APScheduler: the timer waits real seconds
        self.next_run = next_scheduled(now, settings.schedule_minute, settings.schedule_interval_seconds)
        self.record_next_run(self.next_run)
        self._schedule_timer = self.set_timer(
            (self.next_run - now).total_seconds(), self._scheduled_run, name="schedule"
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="schedule")
    def record_next_run(self, when: datetime) -> None:
        """Tell the run store (a SQLite write, which may wait on a busy database) off the UI thread."""
        self.engine.set_next_run(when)

    def _scheduled_run(self) -> None:
        self._schedule_next_run()
        self._start_scheduled()

    def _start_scheduled(self) -> None:
        attached = self.pipeline is not None and self.pipeline.daemon is not None
        active = self.pipeline.active if self.pipeline is not None else None
        # A run waiting for its retry is not running: the next scheduled attempt supersedes it.
        running = active is not None and active.status is not RunStatus.RETRYING
        if not attached and not running and self.busy is None:
            self.start_run(RunTrigger.SCHEDULE)

    def _schedule_retry(self, when: datetime) -> None:
        """A scheduled run failed for a transient reason: try again at `when` (the run shows `retrying`);
        the hourly schedule goes on beside it, and whichever comes first runs."""
        scheduled = self.next_run
        self.next_run = when if scheduled is None else min(scheduled, when)

        def retry() -> None:
            if self.next_run == when:  # the hourly run did not come first: show it as next again
                self.next_run = scheduled
            self._start_scheduled()

        self.set_timer(max(0.0, (when - wall_clock()).total_seconds()), retry, name="retry")

    def on_run_finished(self, message: RunFinished) -> None:
        if message.run is not None:
            self._reported.add(message.run.id)
            self.notify_run(message.run)
        self.poll_now()

    def notify_run(self, run: RunRecord) -> None:
        s = run.totals
        text = f"fetched {s.fetched or 0}, stored {s.stored or 0}, quarantined {s.quarantined or 0}"
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
        if not self.engine_started() or self.command_refused():
            return
        self.busy = "promoting dev → main"
        self._show_status()
        self.promote_branches()

    @work(thread=True, exclusive=True, exit_on_error=False, group="command")
    def promote_branches(self) -> None:
        promotion = self.engine.execute(CommandKind.PROMOTE, {}).promotion
        self.post_message(PromotionFinished(promotion["id"] if promotion else None))

    def on_promotion_finished(self, message: PromotionFinished) -> None:
        if message.promotion_id is None:
            self.notify("nothing to promote: main already equals dev")
        else:
            self.notify(f"promotion {message.promotion_id}: main now equals dev", title="promoted")
        self.poll_now()
