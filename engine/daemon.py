"""The headless engine: an hourly schedule, retries, the command queue and freshness alerts, one writer."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import Any

from engine.api.facade import Engine
from engine.api.schedule import ScheduledRuns
from engine.config import Settings
from engine.errors import PhloError
from engine.outputs.backup_schedule import ScheduledBackups
from engine.runs.logs import setup_logging
from engine.runs.records import CommandKind, CommandRecord, CommandStatus

log = logging.getLogger(__name__)

POLL_S = 0.5
FRESHNESS_EVERY_S = 60.0
SCHEDULE_JITTER_S = 30
GRACE_S = 15.0


def execute_command(engine: Engine, command: CommandRecord) -> tuple[int, str | None, dict[str, Any]]:
    """Carry out one queued command as the CLI would in-process: (exit code, run id, result)."""
    if not isinstance(command.kind, CommandKind):
        return 2, None, {"error": f"unknown command {command.kind!r}", "hint": "upgrade phlo-tui"}
    try:
        outcome = engine.execute_here(command.kind, command.args)
    except PhloError as e:
        return e.exit_code, None, {"error": e.message, "hint": e.hint}
    return outcome.exit_code, outcome.run.id if outcome.run else None, outcome.result()


class Daemon:
    """`phlo-tui --daemon`: holds the writer lease and runs everything in one thread, in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.engine.role = "daemon"
        self._stop = threading.Event()
        self._run_due = threading.Event()
        self._signals = 0
        self.runs = ScheduledRuns(self.engine)
        self._alert_level = "ok"
        self._backups = ScheduledBackups(self.engine, self._alert)

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT. Raises LeaseHeldError when another process writes this home."""
        setup_logging(self.settings.logs_dir)
        self.engine.become_writer()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        scheduler = self._scheduler()
        scheduler.start()
        log.info("daemon started: pid %s, home %s", os.getpid(), self.settings.home)
        self._run_due.set()  # catch up at once from the watermark: one run, however long we were down
        last_freshness = 0.0
        try:
            while not self._stop.is_set():
                if self.engine.lease_lost():
                    log.error("another process took the writer lease over; stopping")
                    return 1
                self._update_next_run(scheduler)
                command = self.engine.store.claim_command()
                if command is not None:
                    self._execute(command)
                elif self._run_due.is_set():
                    self._run_due.clear()
                    self.runs.retry_at = None  # the scheduled run supersedes a retry still waiting
                    self.runs.run(stopping=self._stop.is_set)
                elif self.runs.retry_due():
                    self.runs.run(stopping=self._stop.is_set)
                elif time.monotonic() - last_freshness > FRESHNESS_EVERY_S:
                    last_freshness = time.monotonic()
                    self._check_freshness()
                    self._backups.tick()
                else:
                    self._stop.wait(POLL_S)
        finally:
            scheduler.shutdown(wait=False)
            self.engine.close()
            log.info("daemon stopped")
        return 0

    def _scheduler(self) -> Any:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        scheduler = BackgroundScheduler(timezone=self.settings.timezone)
        trigger: Any
        if self.settings.schedule_interval_seconds:
            trigger = IntervalTrigger(seconds=self.settings.schedule_interval_seconds)
        else:
            trigger = CronTrigger(minute=self.settings.schedule_minute, jitter=SCHEDULE_JITTER_S)
        # The job only flags a run: the main loop runs it, so runs never overlap. Missed firings
        # collapse into one, and the run itself catches up from the watermark.
        scheduler.add_job(
            self._run_due.set,
            trigger,
            id="hourly-run",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        return scheduler

    def _update_next_run(self, scheduler: Any) -> None:
        job = scheduler.get_job("hourly-run")
        next_run = self.runs.retry_at or (job.next_run_time if job is not None else None)
        self.engine.set_next_run(next_run)

    def _execute(self, command: CommandRecord) -> None:
        log.info("command %s: %s %s", command.id, command.kind, command.args)
        code, run_id, result = execute_command(self.engine, command)
        status = CommandStatus.DONE if code in (0, 3) else CommandStatus.FAILED
        self.engine.store.finish_command(command.id, status, exit_code=code, run_id=run_id, result=result)

    def _check_freshness(self) -> None:
        state = self.engine.freshness()
        if state.level == self._alert_level or state.level == "unknown":
            return
        self._alert_level = state.level
        if state.level == "ok":
            log.info("readings are arriving again: %s", state.message)
            return
        (log.error if state.level == "error" else log.warning)("freshness %s: %s", state.level, state.message)
        self._alert(state.level, state.message)

    def _alert(self, level: str, message: str) -> None:
        """Run alert_command, when set, with PHLO_ALERT_LEVEL and PHLO_ALERT_MESSAGE."""
        if self.settings.alert_command:
            try:
                subprocess.run(
                    self.settings.alert_command,
                    shell=True,
                    env={**os.environ, "PHLO_ALERT_LEVEL": level, "PHLO_ALERT_MESSAGE": message},
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                log.error("alert_command failed: %s", e)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            # The lake is crash-safe at any instant: a second signal may leave at once.
            os._exit(0)
        log.info("%s: finishing the current step, then stopping", signal.Signals(signum).name)
        self.engine.stop_requested.set()
        self._stop.set()
        deadline = threading.Timer(GRACE_S, lambda: os._exit(0))
        deadline.daemon = True
        deadline.start()
