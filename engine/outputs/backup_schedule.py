"""The daemon's daily backup: the cut between runs, the packing in a thread, the age alert."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.api.facade import Engine
from engine.errors import PhloError
from engine.outputs.backup import backup_due, backup_state, take_cut, write_scheduled

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(hours=1)
"""After a failed backup, the next attempt waits this long (a full disk stays full for a while)."""


class ScheduledBackups:
    """Called by the daemon's loop between runs (`tick`): when backup_dir's newest backup is a day old,
    take the cut (the daemon holds the lease; its loop waits only for the cut) and pack it in a thread;
    and alert once when the newest backup gets older than two days."""

    def __init__(self, engine: Engine, alert: Callable[[str, str], None]) -> None:
        self.engine = engine
        self.alert = alert
        self._thread: threading.Thread | None = None
        self._failed_at: datetime | None = None
        self._level = "ok"

    def tick(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        settings = self.engine.settings
        if settings.backup_dir is None:
            return
        packing = self._thread is not None and self._thread.is_alive()
        retry_wait = self._failed_at is not None and now - self._failed_at < RETRY_AFTER
        if not packing and not retry_wait and backup_due(settings, now):
            try:
                staging = take_cut(settings)
            except PhloError as e:
                self._failed(now, e)
            else:
                self._thread = threading.Thread(
                    target=self._pack, args=(staging, now), name="phlo-backup", daemon=True
                )
                self._thread.start()
        self._check_age(now)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _pack(self, staging: Path, now: datetime) -> None:
        try:
            out = write_scheduled(self.engine.settings, staging, now)
            self._failed_at = None
            log.info("scheduled backup written: %s", out)
        except PhloError as e:
            self._failed(now, e)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _failed(self, now: datetime, error: PhloError) -> None:
        self._failed_at = now
        log.error("scheduled backup failed: %s", error)

    def _check_age(self, now: datetime) -> None:
        if self._thread is not None and self._thread.is_alive():
            return  # a new backup is on its way
        state = backup_state(self.engine.settings, now)
        level = "ok" if state is None else str(state["level"])
        if level == self._level:
            return
        self._level = level
        if level == "warning" and state is not None:
            log.warning("backup %s: %s", level, state["message"])
            self.alert(level, str(state["message"]))
