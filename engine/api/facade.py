"""The engine's one surface: what the CLI, the daemon and the TUI may ask of it."""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from engine.api.fastread import record_files
from engine.api.lake_query import model_lineage, query_lake
from engine.api.outcome import Outcome, exit_code
from engine.api.reads import (
    BRANCHES,
    HomeStatus,
    home_freshness,
    home_status,
    lake_table_names,
    metrics_query,
)
from engine.clock import Clock, clock_from_env, epoch_seconds
from engine.config import Settings, check_ready
from engine.errors import PhloError, PromotionError
from engine.ingest.nightscout import NightscoutConfig, configure_dlt, site_config
from engine.ingest.tables import RAW_TABLES
from engine.lake.diff import TableDiff, branch_diff
from engine.lake.promotion import promote, recover
from engine.lake.store import Lake
from engine.lake.views import QueryResult
from engine.publish.pgcluster import PrivateCluster
from engine.publish.pgserver import find_server_binaries
from engine.runs.lease import WriterLock, live_daemon
from engine.runs.records import (
    ENTRIES_WATERMARK,
    CheckRecord,
    CommandKind,
    CommandRecord,
    CommandStatus,
    LeaseRecord,
    PromotionRecord,
    RunRecord,
    RunTrigger,
)
from engine.runs.store import RunStore

if TYPE_CHECKING:
    from engine.pipeline import Pipeline
    from engine.publish.publisher import Publisher
    from engine.transform.freshness import Freshness
    from engine.transform.models import Model

log = logging.getLogger(__name__)

DEMO_SEED = 42
MODEL_REFERENCES = "model-references.json"
"""In the home: the tables each SQL model reads (engine.transform.model_refs)."""


class Engine:
    """Everything a front end can do with one phlo home. Use as a context manager; `close()` frees all."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        """On `settings`, with data time from `clock` (default: $PHLO_NOW or the wall clock, engine.clock).

        Raises PhloError when the home cannot be used, ConfigError for a bad $PHLO_NOW."""
        self.settings = settings
        self.clock = clock if clock is not None else clock_from_env()
        """Data time: fetch windows, freshness, today (engine.clock)."""
        try:
            settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            if stat.S_IMODE(settings.home.stat().st_mode) != 0o700:
                settings.home.chmod(0o700)
        except OSError as e:
            raise PhloError(
                f"cannot use the phlo home {settings.home}: {e.strerror}",
                "check that it is a writable directory of yours, or set PHLO_HOME",
            ) from e
        configure_dlt(settings.home)
        self.store = RunStore(settings.runs_db)
        self.lake = Lake(settings.lake_dir, settings.catalog_uri)
        self._lock = WriterLock(settings.home, self.store)
        self._publisher_: Publisher | None = None
        self._simulator: Any = None
        self._models: list[Model] | None = None
        self.stop_requested = threading.Event()
        """Set to end the current run at its next step boundary (SIGTERM in the daemon)."""
        self.role = "cli"
        """What the writer lease calls this process: cli, daemon or tui."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the demo simulator, release the writer lock, close the run store."""
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
        if self._publisher_ is not None:
            self._publisher_.close()
        self._lock.release()
        self.store.close()

    @property
    def _publisher(self) -> Publisher:
        # Made on first use: engine.publish.publisher loads psycopg, pandera's schemas and numpy, which reads and
        # `diff` do not need.
        if self._publisher_ is None:
            from engine.publish.publisher import Publisher

            self._publisher_ = Publisher(self.settings, self.lake)
        return self._publisher_

    # writing: each takes the writer lock first

    def run_now(self, trigger: RunTrigger = RunTrigger.MANUAL, *, full_refresh: bool = False) -> RunRecord:
        """One run: ingest from the watermark, build the layers, gate, promote when configured.

        Returns the finished run (succeeded, held or failed); raises LeaseHeldError, ConfigError.
        """
        return self._pipeline().run(trigger, full_refresh=full_refresh)

    def backfill(self, since: str, until: str | None = None) -> RunRecord:
        """Ingest local days `since`..`until` (YYYY-MM-DD) in windows. Raises PhloError for bad dates."""
        return self._pipeline().backfill(since, until)

    def import_file(
        self,
        path: Path,
        *,
        file_format: str | None = None,
        timezone: str | None = None,
        date_order: str | None = None,
    ) -> RunRecord:
        """Ingest a Nightscout entries export (JSON, plain or gzip) or a Dexcom Clarity or LibreView CSV
        (plain or gzip), the format detected unless `file_format` (nightscout, clarity, libreview)
        names it; CSV local times are read in `timezone` (default PHLO_TIMEZONE), LibreView dates in
        `date_order` (dmy, mdy) when the file cannot tell. Raises SourceError for an unreadable or
        unknown file, ConfigError for an unknown format, zone or date order.

        Needs no Nightscout site: the export is the source.
        """
        return self._pipeline(require_site=False).import_file(
            path, file_format=file_format, timezone=timezone, date_order=date_order
        )

    def execute(
        self, kind: CommandKind, args: Mapping[str, Any], *, on_queued: Callable[[int], None] | None = None
    ) -> Outcome:
        """Carry out a write command (run, backfill, import, promote): queued to the daemon when one owns
        the home, else in this process. The one place that decides; the command line, the dashboard and
        its schedule all come here. `on_queued(pid)` is told before waiting on a daemon.

        Raises PhloError as the command does in this process, and as the daemon answered it (its exit
        code kept) when it ran there.
        """
        daemon = self.daemon()
        if daemon is None:
            return self.execute_here(kind, args)
        if on_queued is not None:
            on_queued(daemon.pid)
        command = self.submit(kind, dict(args))
        result = command.result or {}
        code = command.exit_code if command.exit_code is not None else 1
        if result.get("error") and not command.run_id:
            # The daemon's refusal, as this process would have raised it (a promotion's as PromotionError).
            refused = (PromotionError if kind is CommandKind.PROMOTE else PhloError)(
                str(result["error"]), str(result.get("hint") or "")
            )
            refused.exit_code = code
            raise refused
        run = self.store.get_run(command.run_id) if command.run_id else None
        return Outcome(code, run=run, promotion=result.get("promotion"), queued_to=daemon.pid)

    def execute_here(self, kind: CommandKind, args: Mapping[str, Any]) -> Outcome:
        """Carry out a write command in this process, as its writer (the daemon runs queued ones so)."""
        run: RunRecord
        if kind is CommandKind.RUN:
            trigger = RunTrigger(args.get("trigger", RunTrigger.MANUAL.value))
            run = self.run_now(trigger, full_refresh=bool(args.get("full_refresh")))
        elif kind is CommandKind.BACKFILL:
            run = self.backfill(str(args["since"]), args.get("until"))
        elif kind is CommandKind.IMPORT:
            run = self.import_file(
                Path(str(args["path"])),
                file_format=args.get("format"),
                timezone=args.get("timezone"),
                date_order=args.get("date_order"),
            )
        elif kind is CommandKind.PROMOTE:
            record = self.promote()
            return Outcome(0, promotion=record.to_json() if record else None)
        elif kind is CommandKind.BACKUP_CUT:
            return Outcome(0, staging=self._take_cut_here())
        else:  # pragma: no cover - every CommandKind is handled above
            raise PhloError(f"unknown command {kind!r}", "upgrade phlo-tui")
        return Outcome(exit_code(run), run=run)

    def promote(self) -> PromotionRecord | None:
        """Fast-forward main of every table to dev in one recorded promotion; None when nothing differs.

        Raises PromotionError listing the standing error checks while the last gate on dev failed,
        or when a table's branches have diverged.
        """
        pipeline = self._pipeline(require_site=False)
        blocking = self.store.standing_gate_errors()
        if blocking:
            raise PromotionError(
                "promotion refused: error checks of the last gate on dev still fail: " + "; ".join(blocking),
                "see `phlo-tui quality`; fix the source and run again",
            )
        pipeline.ensure_tables()
        record = promote(self.lake, self.store, None, self.lake_tables())
        if record is not None:
            record_files(self.lake, self.store)
            from engine.publish.target import PublishError

            try:
                self._publisher.publish(record)
            except PublishError as e:
                # The promotion stands; the next run publishes what is missing.
                log.warning("promoted, but publishing failed: %s", e)
        return record

    def remove_private_cluster(self) -> list[Path]:
        """Stop the private PostgreSQL of this home and delete it, data included: PHLO_HOME/postgres
        and, as root, /var/lib/phlo-tui/postgres-<id>. The next publish creates a new one.

        Takes the writer lease first, so no run publishes meanwhile. Returns the paths deleted (none
        without a cluster); raises LeaseHeldError while another process writes the home, ClusterError
        when the server does not stop or a path cannot be deleted.
        """
        self.become_writer()
        if self._publisher_ is not None:
            self._publisher_.close()
        return PrivateCluster(self.settings.home / "postgres", find_server_binaries() or Path()).remove()

    def become_writer(self) -> None:
        """Take the writer lease (or raise LeaseHeldError), then repair what a crashed writer left."""
        if not self._lock.held:
            self._lock.acquire(self.role)
            self.store.fail_abandoned_runs()
            self.store.abandon_commands()
            recover(self.lake, self.store)

    def backup_cut(self) -> Path:
        """Take a backup's consistent cut (engine.outputs.backup.take_cut) as the writer: through the daemon's
        command queue when one runs, else under the writer lease, held for the cut only. Returns the
        staging folder, which the caller packs and removes. Raises BackupError, LeaseHeldError."""
        from engine.outputs.archive import BackupError

        if self.daemon() is not None:
            command = self.submit(CommandKind.BACKUP_CUT, {})
            result = command.result or {}
            if command.exit_code != 0 or "staging" not in result:
                raise BackupError(
                    str(result.get("error", "the daemon could not take the backup")), result.get("hint", "")
                )
            return Path(result["staging"])
        return self._take_cut_here()

    def _take_cut_here(self) -> Path:
        from engine.outputs.backup import take_cut

        held = self._lock.held
        self.become_writer()
        try:
            return take_cut(self.settings)
        finally:
            if not held:
                self._lock.release()

    def record_early_files(self) -> None:
        """Record the files the dashboard's first read needs (engine.api.fastread); a no-op when they are.
        Never raises: without them the next start waits for the engine."""
        record_files(self.lake, self.store)

    def lease_lost(self) -> bool:
        return self._lock.lost.is_set()

    def set_next_run(self, when: datetime | None) -> None:
        """Record when the next run is due; written at once (not at the next heartbeat), so a reader
        never sees a retrying run without its next attempt."""
        self._lock.next_run_at = when
        self._lock.beat_now()

    def daemon(self) -> LeaseRecord | None:
        """The running daemon that owns this home, if any: then writes go through `submit`."""
        return None if self._lock.held else live_daemon(self.store)

    def submit(
        self, kind: CommandKind, args: dict[str, Any], *, timeout_s: float | None = None
    ) -> CommandRecord:
        """Queue a command for the running daemon and wait for its result.

        Raises PhloError when the daemon stops before answering, or after `timeout_s`.
        """
        command_id = self.store.enqueue(kind, args)
        started = time.monotonic()
        while True:
            command = self.store.command(command_id)
            if command.status in (CommandStatus.DONE, CommandStatus.FAILED):
                return command
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise PhloError(f"the daemon did not answer command {command_id} in time", "see its log")
            if command.status is CommandStatus.QUEUED and live_daemon(self.store) is None:
                raise PhloError(
                    "the daemon stopped before it took the command",
                    "start it again, or run the command without a daemon",
                )
            time.sleep(0.2)

    def freshness(self) -> Freshness:
        """How old the newest stored reading is: ok, warning (after freshness_warning_minutes), error (24 h)."""
        return home_freshness(self.settings, self.store, self.clock())

    def _pipeline(self, *, require_site: bool = True) -> Pipeline:
        """The pipeline, as the writer."""
        from engine.pipeline import Pipeline

        if require_site:
            check_ready(self.settings)
        self.become_writer()
        return Pipeline(
            self.settings,
            self.store,
            self.lake,
            self.nightscout_config,
            self.clock,
            tables=self.lake_tables(),
            models=self.models(),
            should_stop=self.stop_requested.is_set,
            publisher=self._publisher,
        )

    def nightscout_config(self) -> NightscoutConfig:
        """The site to read; in the demo, starts the built-in simulator on loopback first."""
        s = self.settings
        url = s.nightscout_url
        if s.demo:
            url = self._start_simulator()
        assert url is not None
        return site_config(s, url)

    def _start_simulator(self) -> str:
        if self._simulator is None:
            from engine.sim.server import SimulatorServer
            from engine.sim.simulator import GlucoseSimulator

            self._simulator = SimulatorServer(
                GlucoseSimulator(seed=DEMO_SEED, tz=self.settings.timezone, clock=epoch_seconds(self.clock))
            ).start()
        return str(self._simulator.url)

    # reading: never takes the lock

    def models(self) -> list[Model]:
        """The SQL models in dependency order."""
        if self._models is None:
            from engine.transform.models import discover_models

            # The tables each model reads are remembered in the home: no sqlglot in a run's process.
            self._models = discover_models(
                sources=[t.name for t in RAW_TABLES], references=self.settings.home / MODEL_REFERENCES
            )
        return self._models

    def model_count(self) -> int:
        """How many SQL models a run builds (each one step)."""
        return len(self.models())

    def lake_tables(self) -> list[str]:
        """Every lake table: the raw tables, then the models in dependency order."""
        return [t.name for t in RAW_TABLES] + [m.name for m in self.models()]

    def watermark_ms(self) -> int | None:
        """Epoch ms of the newest stored reading (the ingest watermark); None before any. Run store only."""
        return self.store.watermark(ENTRIES_WATERMARK)

    def gate_errors(self) -> list[str]:
        """The error checks of the last gate on dev that still fail (they block promotion). Run store only."""
        return self.store.standing_gate_errors()

    def has_table(self, name: str) -> bool:
        """Whether `name` is one of this version's lake tables and has been created (queries can read it)."""
        return name in self.lake_tables() and self.lake.table_exists(name)

    def last_promotion(self) -> PromotionRecord | None:
        """The newest finished promotion: what readers of main see."""
        return self.store.last_promotion()

    def main_snapshots(self) -> dict[str, int | None]:
        """The snapshot of each table that readers of main see (RunStore.main_snapshots)."""
        return self.store.main_snapshots()

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Runs newest first, each with its steps."""
        return self.store.list_runs(limit)

    def quality(self, run_id: str | None = None) -> list[CheckRecord]:
        """Failed checks (errors and warnings) of one run, or of the recent runs."""
        return self.store.checks(run_id)

    def diff(self) -> list[TableDiff]:
        """dev against main per table: snapshots ahead, rows added and removed, local days, schema changes.

        Raises PromotionError when a table's branches have diverged. Tables are listed in
        lake_table_names() order, as `status` lists them and engine.api.fastread's diff does.
        """
        tables = [t for t in lake_table_names() if self.lake.table_exists(t)]
        return branch_diff(self.lake, tables, self.settings.timezone)

    def status(self) -> HomeStatus:
        """The home at a glance: settings without secrets, runs, watermark, table heads, gate.

        Tables are listed in lake_table_names() order (raw, then layer by layer), which the command
        line's light read (engine.api.fastread) gives without parsing the models."""
        return home_status(
            self.settings, self.store, self.table_heads(), self._publisher.describe_target(), self.clock()
        )

    def table_heads(self) -> dict[str, dict[str, int | None]]:
        """Each existing lake table with its dev and main snapshot ids, in lake_table_names() order."""
        return {
            name: {b: self.lake.snapshot_id(name, b) for b in BRANCHES}
            for name in lake_table_names()
            if self.lake.table_exists(name)
        }

    def metrics(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        days: int | None = None,
        branch: str = "main",
    ) -> QueryResult:
        """Rows of gold.fct_daily_glucose_metrics, oldest first: `since`..`until` (YYYY-MM-DD), or
        the last `days` (default 14) local days ending today. Raises PhloError for bad dates."""
        sql, params = metrics_query(self.settings, since, until, days, self.clock())
        if not self.lake.table_exists("gold.fct_daily_glucose_metrics"):
            raise PhloError("no daily metrics yet", f"run `{self.settings.command('run')}` first")
        return self.query(sql, branch, params=params)

    def lineage(self, table: str, column: str) -> dict[str, Any]:
        """Where a model's output column comes from: a tree of {"name", "source", "children"} (sqlglot)."""
        return model_lineage(self.models(), table, column)

    def query(self, sql: str, branch: str = "main", params: dict[str, Any] | None = None) -> QueryResult:
        """Run DuckDB SQL over the lake's tables as of `branch`, by their Iceberg names (raw.glucose_entries).

        `main` is read as of the last recorded promotion, so its tables are one consistent set.
        Raises PhloError with DuckDB's message for a bad query or an unknown branch.
        """
        return query_lake(self, sql, branch, params)
