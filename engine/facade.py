"""The engine's one surface: what the CLI, the daemon and the TUI may ask of it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.config import Settings, check_ready
from engine.errors import PhloError
from engine.lake import Lake
from engine.lease import WriterLock
from engine.nightscout import NightscoutConfig, configure_dlt
from engine.pipeline import ENTRIES_SOURCE, Pipeline
from engine.runstore import CheckRecord, RunRecord, RunStatus, RunStore, RunTrigger
from engine.tables import RAW_TABLES

log = logging.getLogger(__name__)

BRANCHES = ("dev", "main")
DEMO_SEED = 42

EXIT_CODES = {RunStatus.SUCCEEDED: 0, RunStatus.FAILED: 1, RunStatus.HELD: 3}


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Engine:
    """Everything a front end can do with one phlo home. Use as a context manager; `close()` frees all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.home.chmod(0o700)
        configure_dlt(settings.home)
        self.store = RunStore(settings.runs_db)
        self.lake = Lake(settings.lake_dir)
        self._lock = WriterLock(settings.home)
        self._simulator: Any = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the demo simulator, release the writer lock, close the run store."""
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
        self._lock.release()
        self.store.close()

    # writing: each takes the writer lock first

    def run_now(self, trigger: RunTrigger = RunTrigger.MANUAL) -> RunRecord:
        """One incremental run. Returns the finished run; raises LeaseHeldError, ConfigError."""
        return self._pipeline().run(trigger)

    def backfill(self, since: str, until: str | None = None) -> RunRecord:
        """Ingest local days `since`..`until` (YYYY-MM-DD) in windows. Raises PhloError for bad dates."""
        return self._pipeline().backfill(since, until)

    def import_file(self, path: Path) -> RunRecord:
        """Ingest a Nightscout entries export (JSON, plain or gzip). Raises SourceError for unreadable files."""
        return self._pipeline().import_file(path)

    def _pipeline(self) -> Pipeline:
        check_ready(self.settings)
        self._lock.acquire("cli")
        self.store.fail_abandoned_runs()
        return Pipeline(self.settings, self.store, self.lake, self.nightscout_config)

    def nightscout_config(self) -> NightscoutConfig:
        """The site to read; in the demo, starts the built-in simulator on loopback first."""
        s = self.settings
        url = s.nightscout_url
        if s.demo:
            url = self._start_simulator()
        assert url is not None
        return NightscoutConfig(
            url=url,
            token=s.nightscout_token.reveal() if s.nightscout_token else None,
            api_secret=s.nightscout_api_secret.reveal() if s.nightscout_api_secret else None,
            page_size=s.page_size,
            timeout_s=s.request_timeout_s,
            max_attempts=s.max_attempts,
        )

    def _start_simulator(self) -> str:
        if self._simulator is None:
            from engine.simulator import GlucoseSimulator, SimulatorServer

            self._simulator = SimulatorServer(
                GlucoseSimulator(seed=DEMO_SEED, tz=self.settings.timezone)
            ).start()
        return str(self._simulator.url)

    # reading: never takes the lock

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Runs newest first, each with its steps."""
        return self.store.list_runs(limit)

    def quality(self, run_id: str | None = None) -> list[CheckRecord]:
        """Failed checks (errors and warnings) of one run, or of the recent runs."""
        return self.store.checks(run_id)

    def status(self) -> dict[str, Any]:
        """A JSON-safe picture of the home: settings without secrets, the runs, watermarks, table heads."""
        tables: dict[str, dict[str, int | None]] = {}
        for tdef in RAW_TABLES:
            tables[tdef.name] = {b: self.lake.snapshot_id(tdef.name, b) for b in BRANCHES}
        return {
            "home": str(self.settings.home),
            "demo": self.settings.demo,
            "settings": self.settings.public(),
            "watermark_ms": self.store.watermark(ENTRIES_SOURCE),
            "writer": self._lock.holder(),
            "tables": tables,
            "runs": [r.to_json() for r in self.list_runs(20)],
        }

    def query(self, sql: str, branch: str = "main") -> QueryResult:
        """Run DuckDB SQL over the lake's tables as of `branch`, by their Iceberg names (raw.glucose_entries).

        Raises PhloError with DuckDB's message for a bad query or an unknown branch.
        """
        import duckdb

        if branch not in BRANCHES:
            raise PhloError(f"unknown branch {branch!r}", f"use one of {', '.join(BRANCHES)}")
        con = duckdb.connect()
        try:
            con.execute(f"set timezone = '{_zone_literal(self.settings.timezone)}'")
            for tdef in RAW_TABLES:
                if self.lake.snapshot_id(tdef.name, branch) is not None:
                    self.lake.register_duckdb(con, tdef.name, branch)
            try:
                cursor = con.execute(sql)
            except duckdb.Error as e:
                raise PhloError(
                    f"SQL error: {e}", "check the query; tables are named like raw.glucose_entries"
                ) from e
            columns = tuple(d[0] for d in cursor.description or ())
            return QueryResult(columns, cursor.fetchall() if columns else [])
        finally:
            con.close()


def _zone_literal(zone: str) -> str:
    # Settings validated the zone as an IANA name; this keeps the literal safe regardless.
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", zone):
        raise PhloError(f"bad time zone {zone!r}", "use an IANA name such as Europe/Berlin")
    return zone


def exit_code(run: RunRecord) -> int:
    return EXIT_CODES.get(run.status, 1)
