"""The headless engine: an hourly schedule, retries, the command queue and freshness alerts, one writer."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from engine.api.facade import Engine, exit_code
from engine.config import Settings
from engine.errors import PhloError
from engine.outputs.backup_schedule import ScheduledBackups
from engine.runs.logs import setup_logging
from engine.runs.records import CommandKind, CommandRecord, CommandStatus, RunRecord, RunStatus, RunTrigger
from engine.runs.retry import RetryPolicy

log = logging.getLogger(__name__)

POLL_S = 0.5
FRESHNESS_EVERY_S = 60.0
SCHEDULE_JITTER_S = 30
GRACE_S = 15.0


def execute_command(engine: Engine, command: CommandRecord) -> tuple[int, str | None, dict[str, Any]]:
    """Carry out one queued command as the CLI would in-process: (exit code, run id, result)."""
    args = command.args
    try:
        run: RunRecord
        if command.kind is CommandKind.RUN:
            run = engine.run_now(
                RunTrigger(args.get("trigger", "manual")), full_refresh=bool(args.get("full_refresh"))
            )
        elif command.kind is CommandKind.BACKFILL:
            run = engine.backfill(str(args["since"]), args.get("until"))
        elif command.kind is CommandKind.IMPORT:
            run = engine.import_file(
                Path(str(args["path"])),
                file_format=args.get("format"),
                timezone=args.get("timezone"),
                date_order=args.get("date_order"),
            )
        elif command.kind is CommandKind.BACKUP_CUT:
            return 0, None, {"staging": str(engine.backup_cut())}
        elif command.kind is CommandKind.PROMOTE:
            record = engine.promote()
            return 0, None, {"promotion": record.to_json() if record else None}
        else:
            return 2, None, {"error": f"unknown command {command.kind!r}", "hint": "upgrade phlo-tui"}
    except PhloError as e:
        return e.exit_code, None, {"error": e.message, "hint": e.hint}
    return exit_code(run), run.id, {"run": run.to_json()}


class Daemon:
    """`phlo-tui --daemon`: holds the writer lease and runs everything in one thread, in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.engine.role = "daemon"
        self._stop = threading.Event()
        self._run_due = threading.Event()
        self._signals = 0
        self._retry_at: datetime | None = None
        self._retry_of: RunRecord | None = None
        self._attempt = 0
        self._alert_level = "ok"
        self._backups = ScheduledBackups(self.engine, self._alert)
        self.policy = RetryPolicy(
            max_retries=settings.retry_max, delay=settings.retry_delay_s, backoff=2.0, jitter=0.1
        )

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
                    self._scheduled_run(RunTrigger.SCHEDULE)
                elif self._retry_at is not None and datetime.now(UTC) >= self._retry_at:
                    self._retry_at = None
                    self._scheduled_run(RunTrigger.SCHEDULE, retry=True)
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
        next_run = self._retry_at or (job.next_run_time if job is not None else None)
        self.engine.set_next_run(next_run)

    def _execute(self, command: CommandRecord) -> None:
        log.info("command %s: %s %s", command.id, command.kind, command.args)
        code, run_id, result = execute_command(self.engine, command)
        status = CommandStatus.DONE if code in (0, 3) else CommandStatus.FAILED
        self.engine.store.finish_command(command.id, status, exit_code=code, run_id=run_id, result=result)

    def _scheduled_run(self, trigger: RunTrigger, *, retry: bool = False) -> None:
        if self._retry_of is not None:
            # A new attempt supersedes the one waiting: it ends failed, the new run carries on.
            self.engine.store.finish_run(
                self._retry_of.id,
                RunStatus.FAILED,
                error=self._retry_of.error,
                hint=self._retry_of.hint,
                summary=self._retry_of.summary,
            )
            self._retry_of = None
        try:
            run = self.engine.run_now(trigger)
        except PhloError as e:
            log.error("scheduled run could not start: %s", e)
            return
        if run.status is RunStatus.FAILED:
            log.error("run %s failed: %s", run.id, run.error)
        if run.status is RunStatus.FAILED and run.summary.get("transient") and not self._stop.is_set():
            self._attempt = self._attempt + 1 if retry else 1
            if self._attempt <= self.policy.max_retries:
                wait = self.policy.delay_for(self._attempt, random.random())
                self._retry_at = datetime.now(UTC) + timedelta(seconds=wait)
                # The next attempt is recorded before the run shows `retrying`, so readers see both.
                self.engine.set_next_run(self._retry_at)
                self._retry_of = self.engine.store.mark_retrying(run.id, self._retry_at, self._attempt)
                log.warning(
                    "run %s failed for a transient reason; retry %s in %.0f s", run.id, self._attempt, wait
                )
                return
        self._attempt = 0

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
