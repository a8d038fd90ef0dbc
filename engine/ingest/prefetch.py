"""Prefetch: a fresh `phlo-tui run` reads the site in a forked child while it imports the engine.

A run's first second and more goes to importing pyiceberg, DuckDB, pandera and psycopg, and its fetch to
importing dlt and reading the site: on a machine with two cores both can go at once. `start` forks a child
before the engine is imported (this module and what it imports at the top are light); the child reads the
run's fetch windows, exactly as the run would plan them from the run store's watermarks at the data time
`now`, and hands the records (or the error the site gave) back through a pipe. It writes nothing: the run,
its steps, the merges and the watermarks stay the parent's (engine.pipeline), so a kill at any point loses
nothing. The run takes the prefetch (`claim`) only when the watermarks it plans from are the ones the child
planned from, and then plans the same windows from the child's `now`; else it fetches as always.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import signal
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import SourceError

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.ingest.nightscout import FetchWindow, NightscoutConfig
    from engine.ingest.sources import Source

log = logging.getLogger(__name__)

MAX_WINDOWS = 2
"""Windows per source a prefetch reads at most: an hourly run has one; a long catch-up fetches as always."""
PROFILES = ("profiles", 0, 0)
"""The key of the profile documents (engine.ingest.profiles) in `Prefetched.results`."""
FUTURE_SLACK_MS = 3_600_000
"""Entries dated up to an hour ahead are accepted (clock skew): a run fetches that far so none is missed."""
MAX_AGE_S = 300.0
"""A prefetch planned longer ago than this (the run waited for the writer lease, say) is not used."""


def source_since_ms(watermark: int | None, now: datetime, settings: Settings) -> int:
    """Where a run fetches a source from: its watermark minus the lookback, or the last `initial_days`
    on its first run; never later than the re-read window (a record changed or deleted within it is
    read again)."""
    if watermark is None:
        return int((now - timedelta(days=settings.initial_days)).timestamp() * 1000)
    since = watermark + 1 - settings.lookback_minutes * 60_000
    return min(since, int((now - timedelta(hours=settings.reread_hours)).timestamp() * 1000))


@dataclass
class Prefetched:
    """What the child read: per (source name, window start, window end), the records or the error."""

    now: datetime
    watermarks: dict[str, int | None]
    results: dict[tuple[str, int, int], list[dict[str, Any]] | tuple[str, str, str, bool]] = field(
        default_factory=dict
    )

    def records(self, source: str, start_ms: int, end_ms: int) -> list[dict[str, Any]] | None:
        """The window's records, None when it was not prefetched; raises the site's error as the fetch would."""
        result = self.results.get((source, start_ms, end_ms))
        if result is None or isinstance(result, list):
            return result
        from engine.ingest.nightscout_http import AccessRefused, EndpointNotFound

        kinds = {"EndpointNotFound": EndpointNotFound, "AccessRefused": AccessRefused}
        kind, message, hint, transient = result
        raise kinds.get(kind, SourceError)(message, hint, transient=transient)


def fetch_window(
    prefetched: Prefetched | None,
    config: NightscoutConfig,
    source: Source,
    window: FetchWindow,
    detail: dict[str, Any],
) -> list[dict[str, Any]]:
    """The window's records (or the site's error) from the prefetch when it read that window (then
    `detail` says `prefetched`), else read now (engine.ingest.nightscout.fetch_records)."""
    if prefetched is not None and (source.name, window.start_ms, window.end_ms) in prefetched.results:
        detail["prefetched"] = True
        records = prefetched.records(source.name, window.start_ms, window.end_ms)
        assert records is not None
        return records
    from engine.ingest.nightscout import fetch_records

    return fetch_records(config, source.path, source.time_field, window)


@dataclass
class _Child:
    pid: int
    read_fd: int
    home: Path


_pending: _Child | None = None


def start(settings: Settings, now: datetime) -> None:
    """Fork the child that reads this run's windows, when the home has run before and the site is a
    configured URL (not the demo's simulator, which lives in the run's own process). Never raises."""
    global _pending
    if _pending is not None or settings.demo or not settings.nightscout_url or not hasattr(os, "fork"):
        return
    try:
        watermarks = _watermarks(settings.runs_db)
    except (sqlite3.Error, OSError):
        return
    if watermarks is None:
        return  # a first run reads initial_days: no prefetch
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_fd)
            _die_with(parent)
            _write(write_fd, _read_windows(settings, now, watermarks))
            code = 0
        except BaseException:  # the parent fetches as always
            pass
        finally:
            os._exit(code)
    os.close(write_fd)
    _pending = _Child(pid, read_fd, settings.home)
    atexit.register(_discard)


def claim(home: Path, watermarks: dict[str, int | None], now: datetime) -> Prefetched | None:
    """The prefetch for this run, once: None when there is none for `home`, when the child failed, or when
    it planned from other `watermarks` or too long before `now`."""
    global _pending
    child, _pending = _pending, None
    if child is None:
        return None
    try:
        if child.home != home:
            return None
        with os.fdopen(child.read_fd, "rb") as pipe:
            child.read_fd = -1
            data = pipe.read()
        os.waitpid(child.pid, 0)
        child.pid = 0
        prefetched = pickle.loads(data) if data else None
    except (OSError, pickle.PickleError, EOFError):
        return None
    finally:
        _end(child)
    if not isinstance(prefetched, Prefetched) or prefetched.watermarks != watermarks:
        return None
    if not 0 <= (now - prefetched.now).total_seconds() <= MAX_AGE_S:
        return None
    return prefetched


def _discard() -> None:
    """At exit: a prefetch nobody claimed (the run went to the daemon, or failed before fetching)."""
    global _pending
    child, _pending = _pending, None
    if child is not None:
        _end(child)


def _end(child: _Child) -> None:
    if child.read_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(child.read_fd)
        child.read_fd = -1
    if child.pid:
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)  # only reads: nothing to finish
            os.waitpid(child.pid, 0)
        child.pid = 0


def _watermarks(runs_db: Path) -> dict[str, int | None] | None:
    """Every watermark of the run store (read only), None when it has none yet."""
    if not runs_db.exists():
        return None
    con = sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True, timeout=1.0)
    try:
        rows = con.execute("select source, value from watermarks").fetchall()
    finally:
        con.close()
    return {str(source): int(value) for source, value in rows} or None


def _die_with(parent: int) -> None:
    """Linux: the child is killed when the parent dies (kill -9 included)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _read_windows(settings: Settings, now: datetime, watermarks: dict[str, int | None]) -> Prefetched:
    # The endpoints, not engine.ingest.sources: the child imports no pandas, pandera or pyiceberg, and so
    # has its records ready before the parent has imported the engine.
    from engine.ingest.endpoints import ENDPOINTS
    from engine.ingest.nightscout import configure_dlt, fetch_records, plan_windows, site_config
    from engine.ingest.profiles import fetch_profiles

    configure_dlt(settings.home)
    assert settings.nightscout_url is not None
    config = site_config(settings, settings.nightscout_url)
    until_ms = int(now.timestamp() * 1000) + FUTURE_SLACK_MS
    prefetched = Prefetched(now, {e.watermark_key: watermarks.get(e.watermark_key) for e in ENDPOINTS})
    for endpoint in ENDPOINTS:
        since = source_since_ms(watermarks.get(endpoint.watermark_key), now, settings)
        windows = plan_windows(since, until_ms, settings.backfill_window_days)
        if len(windows) > MAX_WINDOWS:
            continue
        for window in windows:
            key = (endpoint.name, window.start_ms, window.end_ms)
            try:
                prefetched.results[key] = fetch_records(config, endpoint.path, endpoint.time_field, window)
            except SourceError as e:
                prefetched.results[key] = (type(e).__name__, e.message, e.hint, e.transient)
                break  # the run stops at this window's error, or skips the rest of a source not served
    try:
        prefetched.results[PROFILES] = fetch_profiles(config)
    except SourceError as e:
        prefetched.results[PROFILES] = (type(e).__name__, e.message, e.hint, e.transient)
    return prefetched


def _write(fd: int, prefetched: Prefetched) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(pickle.dumps(prefetched, protocol=pickle.HIGHEST_PROTOCOL))
