"""Scheduled runs and their retries, the same for the daemon and for the dashboard's in-process schedule.

A scheduled run that fails for a transient reason (the site or the database down) is retried after
`retry_delay_s`, doubling each time, up to `retry_max` times; the run shows `retrying` with the time of
its next attempt in the meantime. A new attempt ends the one waiting as failed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from engine.api.facade import Engine
from engine.errors import PhloError
from engine.runs.records import RunRecord, RunStatus, RunTrigger
from engine.runs.retry import RetryPolicy

log = logging.getLogger(__name__)


class ScheduledRuns:
    """Starts scheduled runs and decides their retries. Not thread-safe: one caller at a time."""

    def __init__(self, engine: Engine, *, draw: Callable[[], float] = random.random) -> None:
        settings = engine.settings
        self.engine = engine
        self.policy = RetryPolicy(
            max_retries=settings.retry_max, delay=settings.retry_delay_s, backoff=2.0, jitter=0.1
        )
        self.retry_at: datetime | None = None
        """When the next attempt of a failed run is due (process time); None when none is."""
        self._draw = draw
        self._retry_of: RunRecord | None = None
        self._attempt = 0

    def retry_due(self, now: datetime | None = None) -> bool:
        return self.retry_at is not None and (now or datetime.now(UTC)) >= self.retry_at

    def run(
        self, trigger: RunTrigger = RunTrigger.SCHEDULE, *, stopping: Callable[[], bool] = lambda: False
    ) -> RunRecord | None:
        """One scheduled run, or the due retry of the last one (then `retry_at` is cleared first).

        Returns the run, or None when it could not start (another writer, no site: logged). After a
        transient failure, sets `retry_at` and records it as the home's next run, unless `stopping()`.
        """
        retry = self.retry_due()
        self.retry_at = None
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
            return None
        if run.status is RunStatus.FAILED:
            log.error("run %s failed: %s", run.id, run.error)
        if run.status is RunStatus.FAILED and run.totals.transient and not stopping():
            self._attempt = self._attempt + 1 if retry else 1
            if self._attempt <= self.policy.max_retries:
                wait = self.policy.delay_for(self._attempt, self._draw())
                self.retry_at = datetime.now(UTC) + timedelta(seconds=wait)
                # The next attempt is recorded before the run shows `retrying`, so readers see both.
                self.engine.set_next_run(self.retry_at)
                self._retry_of = self.engine.store.mark_retrying(run.id, self.retry_at, self._attempt)
                log.warning(
                    "run %s failed for a transient reason; retry %s in %.0f s", run.id, self._attempt, wait
                )
                return run
        self._attempt = 0
        return run
