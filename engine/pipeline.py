"""One run of the pipeline: fetch windows of every declared source from Nightscout, validate, merge
into the lake on `dev`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.api.arguments import check_backfill
from engine.api.fastread import record_files
from engine.clock import Clock, wall_clock
from engine.config import Settings
from engine.errors import Interrupted, PhloError
from engine.ingest.history_sync import ingest_history
from engine.ingest.nightscout import (
    FetchWindow,
    NightscoutConfig,
    plan_windows,
    redact_url,
)
from engine.ingest.nightscout_http import EndpointNotFound
from engine.ingest.prefetch import FUTURE_SLACK_MS, Prefetched, fetch_window, source_since_ms
from engine.ingest.prefetch import claim as claim_prefetch
from engine.ingest.profiles import ingest_profiles
from engine.ingest.removals import mark_removed
from engine.ingest.sources import GLUCOSE, SOURCES, Source
from engine.ingest.tables import RAW_TABLES
from engine.ingest.validation import CheckResult
from engine.lake.promotion import promote
from engine.lake.store import Lake
from engine.pipeline_batch import append_quarantine, month_batches, record_checks, release_memory
from engine.pipeline_expiry import expire_history
from engine.pipeline_export import read_export
from engine.pipeline_totals import BatchOutcome, _Totals
from engine.publish.prestart import start_target
from engine.publish.publisher import Publisher
from engine.runs.logs import CURRENT_RUN
from engine.runs.records import RunRecord, RunStatus, RunTrigger, Severity
from engine.runs.store import RunStore, blocking_text
from engine.transform.layers import LayerBuilder, touched_months
from engine.transform.models import Model
from engine.transform.quality import GateReport

if TYPE_CHECKING:
    from engine.ingest.imports import CsvExport

log = logging.getLogger(__name__)

ENTRIES_SOURCE = GLUCOSE.watermark_key
IMPORT_CHUNK = 100_000
# Local months built and gated together: a five-year backfill in one build peaked at 833 MB, in
# batches of 12 months at 599-631 MB, of 6 months (with `release_memory` between) at 518 MB.
BUILD_BATCH_MONTHS = 6


def _now_ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def _parse_day(text: str, zone_name: str) -> datetime:
    from zoneinfo import ZoneInfo

    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError as e:
        raise PhloError(f"bad date {text!r}", "use YYYY-MM-DD, for example 2026-01-31") from e
    return day.replace(tzinfo=ZoneInfo(zone_name))


class Pipeline:
    """Ingest runs against one home. The caller holds the writer lock."""

    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        lake: Lake,
        nightscout: Callable[[], NightscoutConfig],
        clock: Clock = wall_clock,
        *,
        tables: Sequence[str] = (),
        models: list[Model] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        publisher: Publisher | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lake = lake
        self._nightscout = nightscout
        self._clock = clock
        self.tables = list(tables) or [t.name for t in RAW_TABLES]
        self.models = models
        self._should_stop = should_stop
        self.publisher = publisher
        self._prestarted = False
        self._gated: set[str] = set()

    def ensure_tables(self) -> None:
        for tdef in RAW_TABLES:
            self.lake.ensure_table(tdef)

    # entry points

    def run(self, trigger: RunTrigger = RunTrigger.MANUAL, *, full_refresh: bool = False) -> RunRecord:
        """Incremental run from the watermark (or the last `initial_days` on a first run).

        With `full_refresh`, every model is rebuilt from all of raw instead of the touched months.
        """
        now = self._clock()
        watermarks = {source.watermark_key: self.store.watermark(source.watermark_key) for source in SOURCES}
        prefetched = claim_prefetch(self.settings.home, watermarks, now)
        if prefetched is not None:
            now = prefetched.now  # the windows the child read (engine.ingest.prefetch)
        since = {
            source.name: source_since_ms(watermarks[source.watermark_key], now, self.settings)
            for source in SOURCES
        }
        until_ms = _now_ms(now) + FUTURE_SLACK_MS
        params = {
            "since_ms": since[GLUCOSE.name],
            "watermark": self.store.watermark(GLUCOSE.watermark_key),
            "full_refresh": full_refresh,
            "sources_since_ms": since,
        }
        return self._run_windows(
            trigger, since, until_ms, params, full_refresh=full_refresh, history=True, prefetched=prefetched
        )

    def backfill(self, since: str, until: str | None = None) -> RunRecord:
        """History from local day `since` up to the end of local day `until` (default: now)."""
        check_backfill(since, until, self._clock().astimezone(self.settings.zone).date())
        start = _parse_day(since, self.settings.timezone)
        end = _parse_day(until, self.settings.timezone) + timedelta(days=1) if until else self._clock()
        until_ms = min(_now_ms(end), _now_ms(self._clock()) + FUTURE_SLACK_MS)
        params = {"since": since, "until": until}
        return self._run_windows(
            RunTrigger.BACKFILL, {source.name: _now_ms(start) for source in SOURCES}, until_ms, params
        )

    def import_file(
        self,
        path: Path,
        *,
        file_format: str | None = None,
        timezone: str | None = None,
        date_order: str | None = None,
    ) -> RunRecord:
        """An export file through the same validation and merge: Nightscout entries (JSON array, plain
        or gzip), or a Dexcom Clarity or LibreView CSV (engine.ingest.imports), its format told by its content
        unless `file_format` names it; CSV local times are read in `timezone` (default the setting)."""
        from engine.ingest.imports import NIGHTSCOUT, open_csv_import
        from engine.ingest.imports import file_format as detected_format

        fmt = detected_format(path, file_format)
        if fmt != NIGHTSCOUT:
            zone = timezone or self.settings.timezone
            opened: CsvExport | None = open_csv_import(
                path, fmt, timezone=zone, date_order=date_order, now=self._clock()
            )
            assert opened is not None
            csv_run = self.store.create_run(RunTrigger.IMPORT, opened.params())

            from engine.pipeline_import import BUILD_BATCH_MONTHS as CSV_BATCH_MONTHS
            from engine.pipeline_import import store_import

            def store_csv(totals: _Totals) -> None:
                nonlocal opened
                assert opened is not None
                store_import(self, csv_run.id, opened, totals)
                opened = None  # the layers build next: hand the file's bytes back first

            return self._execute(csv_run, store_csv, batch_months=CSV_BATCH_MONTHS)
        entries = read_export(path)
        run = self.store.create_run(RunTrigger.IMPORT, {"file": path.name, "entries": len(entries)})

        def ingest(totals: _Totals) -> None:
            for offset in range(0, max(len(entries), 1), IMPORT_CHUNK):
                self.checkpoint()
                chunk = entries[offset : offset + IMPORT_CHUNK]
                totals.add(self._store_batch(run.id, GLUCOSE, chunk, source=path.name))

        return self._execute(run, ingest)

    def rebuild(self, *, full_refresh: bool = False) -> RunRecord:
        """No ingest: rebuild the pending months (or everything), gate, and promote."""
        run = self.store.create_run(RunTrigger.MANUAL, {"full_refresh": full_refresh})
        return self._execute(run, lambda totals: None, full_refresh=full_refresh)

    # the work

    def _run_windows(
        self,
        trigger: RunTrigger,
        since_ms: dict[str, int],
        until_ms: int,
        params: dict[str, Any],
        *,
        full_refresh: bool = False,
        history: bool = False,
        prefetched: Prefetched | None = None,
    ) -> RunRecord:
        """Fetch every declared source from its own `since_ms` to `until_ms`, window by window; with
        `history`, then every change since the sync position where the site serves API v3."""
        windows = {
            source.name: plan_windows(since_ms[source.name], until_ms, self.settings.backfill_window_days)
            for source in SOURCES
        }
        run = self.store.create_run(
            trigger, {**params, "until_ms": until_ms, "windows": len(windows[GLUCOSE.name])}
        )

        def ingest(totals: _Totals) -> None:
            config = self._nightscout()
            for source in SOURCES:
                planned = windows[source.name]
                for index, window in enumerate(planned, start=1):
                    self.checkpoint()
                    records = self._fetch(run.id, config, source, window, index, len(planned), prefetched)
                    self._prestart_publish()  # the site answered: the run goes on to publish
                    if records is None:
                        self._not_served(run.id, source, totals)
                        break
                    outcome = self._store_batch(run.id, source, records, source=redact_url(config.url))
                    totals.add(outcome, source)
                    if removed := mark_removed(self, run.id, source, window, records, now=self._clock()):
                        totals.extra["removed"] = totals.extra.get("removed", 0) + removed
                    if outcome.newest_ms is not None:
                        self.store.advance_watermark(source.watermark_key, outcome.newest_ms, run.id)
            profiles = ingest_profiles(
                self,
                run.id,
                config,
                zone=self.settings.zone,
                since_ms=min(since_ms.values()),
                now=self._clock(),
                prefetched=prefetched,
            )
            totals.extra["profiles"] = profiles if profiles is not None else "not served"
            if history:
                ingest_history(self, run.id, config, totals, since_ms)

        return self._execute(run, ingest, full_refresh=full_refresh)

    def _not_served(self, run_id: str, source: Source, totals: _Totals) -> None:
        """An optional endpoint the site does not have: a warning, and the other sources go on."""
        log.warning("the site does not serve %s (HTTP 404): skipped", source.path)
        totals.not_served.append(source.name)
        record_checks(
            self.store,
            run_id,
            [
                CheckResult(
                    check="endpoint_served",
                    table=source.table.name,
                    column=None,
                    severity=Severity.WARNING,
                    failing_count=1,
                    samples=({"endpoint": source.path, "status": 404},),
                )
            ],
        )

    def _execute(
        self,
        run: RunRecord,
        ingest: Callable[[_Totals], None],
        *,
        full_refresh: bool = False,
        batch_months: int | None = None,
    ) -> RunRecord:
        """Ingest, then build the layers, gate them and promote; every failure ends the run `failed`."""
        totals = _Totals()
        token = CURRENT_RUN.set(run.id)
        log.info("run started (%s)", run.trigger.value)
        try:
            self.ensure_tables()
            expire_history(self, run.id)
            ingest(totals)
            self._prestart_publish()
            finished = self._layers_gates_promotion(run, totals, full_refresh, batch_months)
        except PhloError as e:
            return self._fail(run, e, totals)
        except KeyboardInterrupt:
            # Ctrl-C: the run ends `failed` now, not `running` until the next writer finds it abandoned.
            self._fail(run, Interrupted(), totals)
            raise
        except Exception as e:
            self._fail(run, PhloError(f"internal error: {type(e).__name__}: {e}", "please report it"), totals)
            raise
        finally:
            CURRENT_RUN.reset(token)
        # For the dashboard's next start: the files of the heads this run moved (never raises).
        record_files(self.lake, self.store)
        return finished

    def _layers_gates_promotion(
        self, run: RunRecord, totals: _Totals, full_refresh: bool, batch_months: int | None
    ) -> RunRecord:
        months = self.store.pending_months()
        summary: dict[str, Any] = totals.summary()
        extra = [r for r in (totals.quarantine_ratio(source) for source in SOURCES) if r is not None]
        builder = LayerBuilder(self.lake, self.store, self.settings.timezone, models=self.models)
        check_freshness = run.trigger in (RunTrigger.MANUAL, RunTrigger.SCHEDULE)
        if not months and not full_refresh and not extra:
            # Nothing new reached the lake: only freshness can change; the last build's gates stand.
            freshness = builder.freshness(self._clock()) if check_freshness else None
            if freshness is None or freshness.severity is not Severity.ERROR:
                record_checks(self.store, run.id, [freshness] if freshness else [])
                return self._maybe_promote(run, summary)
            build = None
        else:
            batches = [None] if full_refresh else month_batches(months, batch_months or BUILD_BATCH_MONTHS)
            for batch in batches[:-1]:
                # A long backfill is built and gated half a year at a time: memory stays that of
                # half a year, on top of what the ingest left once it is handed back.
                release_memory()
                build = builder.build(run.id, batch, checkpoint=self.checkpoint, whole_tables=False)
                with self.store.step(run.id, "gates") as step:
                    gate = builder.gate(build, now=self._clock(), check_freshness=False, extra=[])
                    record_checks(self.store, run.id, gate.results)
                    step.rows = len(gate.results)
                    step.detail.update(errors=len(gate.errors), warnings=len(gate.results) - len(gate.errors))
                if gate.errors:
                    summary.update(gate="failed", months=sorted(months))
                    return self._held(run, summary, gate)
                self.store.clear_pending_months(set(batch or ()))
            if len(batches) > 1:
                release_memory()
            build = builder.build(run.id, batches[-1], checkpoint=self.checkpoint)
        with self.store.step(run.id, "gates") as step:
            gate = builder.gate(build, now=self._clock(), check_freshness=check_freshness, extra=extra)
            record_checks(self.store, run.id, gate.results)
            step.rows = len(gate.results)
            step.detail.update(errors=len(gate.errors), warnings=len(gate.results) - len(gate.errors))
        rebuilt = sorted(months) if build is not None and build.months is not None else []
        summary.update(gate="failed" if gate.errors else "passed", months=rebuilt)
        if gate.errors:
            return self._held(run, summary, gate)
        self.store.clear_pending_months(months)
        # What the gate checked, for the publish of this run's promotion (not checked twice).
        self._gated = {r.name for r in build.results if r.output is not None} if build is not None else set()
        return self._maybe_promote(run, summary, gated=True)

    def _held(self, run: RunRecord, summary: dict[str, Any], gate: GateReport) -> RunRecord:
        # The months stay pending: the next run rebuilds and gates them again.
        summary["blocking"] = [
            blocking_text(r.table, r.check, r.column, r.failing_count) for r in gate.errors
        ]
        return self.store.finish_run(
            run.id,
            RunStatus.HELD,
            error=f"held by {len(gate.errors)} failing error check(s); main is unchanged",
            hint="see `phlo-tui quality`; fix the source and run again",
            summary=summary,
        )

    def _maybe_promote(self, run: RunRecord, summary: dict[str, Any], *, gated: bool = False) -> RunRecord:
        """Promote when configured; a run that evaluated no gate inherits the last gate's verdict."""
        blocking = [] if gated else self.store.standing_gate_errors()
        if blocking:
            summary["blocking"] = blocking
            return self.store.finish_run(
                run.id,
                RunStatus.HELD,
                error="held: the last quality gate on dev failed; main is unchanged",
                hint="see `phlo-tui quality`; fix the source and run again",
                summary=summary,
            )
        if self.settings.auto_promote:
            self.checkpoint()
            with self.store.step(run.id, "promote") as step:
                record = promote(self.lake, self.store, run.id, self.tables)
                step.rows = 0 if record is None else len(record.tables)
                step.detail.update(promotion=None if record is None else record.id)
            summary["promotion"] = None if record is None else record.id
        last = self.store.last_promotion()
        if self.publisher is not None and last is not None:
            # The last promotion, not only this run's: a run after a failed publish catches up.
            self.checkpoint()
            own = summary.get("promotion") == last.id and gated
            checked = {t: s for t in self._gated if (s := last.snapshot(t)) is not None} if own else {}
            with self.store.step(run.id, "publish") as step:
                outcome = self.publisher.publish(last, run_id=run.id, gated=checked)
                step.rows = outcome.published_rows
                step.detail.update(outcome.to_json())
            summary["publish"] = (
                f"skipped: {outcome.skipped}"
                if outcome.skipped
                else {t.target_table: t.status.value for t in outcome.tables}
            )
        return self.store.finish_run(run.id, RunStatus.SUCCEEDED, summary=summary)

    def _prestart_publish(self) -> None:
        """Start the private PostgreSQL in the background, once, when this run will publish to it: it is
        ready by the publish step instead of starting there (engine.publish.prestart)."""
        if self._prestarted or self.publisher is None:
            return
        self._prestarted = True
        if self.settings.auto_promote or self.store.last_promotion() is not None:
            start_target(self.publisher)

    def checkpoint(self) -> None:
        """Raise Interrupted at a step boundary when the process was asked to stop."""
        if self._should_stop():
            raise Interrupted()

    def _fetch(
        self,
        run_id: str,
        config: NightscoutConfig,
        source: Source,
        window: FetchWindow,
        index: int,
        count: int,
        prefetched: Prefetched | None = None,
    ) -> list[dict[str, Any]] | None:
        """The window's records; None when an optional endpoint is not served (HTTP 404)."""
        detail = {
            "source": source.name,
            "window": index,
            "windows": count,
            "start": datetime.fromtimestamp(window.start_ms / 1000, UTC).isoformat(),
            "end": datetime.fromtimestamp(window.end_ms / 1000, UTC).isoformat(),
        }
        with self.store.step(run_id, "fetch", detail) as step:
            try:
                records = fetch_window(prefetched, config, source, window, step.detail)
            except EndpointNotFound as e:
                if not source.optional:
                    raise
                step.detail.update(not_served=e.message)
                return None
            step.rows = len(records)
        return records

    def _store_batch(
        self, run_id: str, declared: Source, entries: Sequence[object], *, source: str, time_ids: bool = False
    ) -> BatchOutcome:
        now = self._clock()
        with self.store.step(run_id, "validate", {"source": declared.name}) as step:
            batch = declared.validate_batch(entries, run_id=run_id, source=source, now=now)
            step.rows = batch.valid.num_rows
            step.detail.update(quarantined=batch.quarantine.num_rows, input=batch.input_count)
            record_checks(self.store, run_id, batch.results)
        with self.store.step(run_id, "merge", {"source": declared.name}) as step:
            # Months are marked pending before the commit, so a crash right after it still rebuilds them.
            already = self.store.pending_months()
            months = touched_months(batch.valid, declared.time_column, self.settings.timezone)
            self.store.add_pending_months(months, run_id)
            properties = {"phlo.run-id": run_id}  # time_ids: the ids hold local times (Lake.merge)
            result = self.lake.merge(
                declared.table, batch.valid, snapshot_properties=properties, time_keyed=time_ids
            )
            if result.snapshot_id is None:
                self.store.clear_pending_months(months - already)
            quarantined = append_quarantine(self.lake, declared, batch.quarantine, run_id)
            step.rows = result.rows_inserted + result.rows_updated
            step.detail.update(
                inserted=result.rows_inserted,
                updated=result.rows_updated,
                unchanged=result.rows_unchanged,
                partitions=list(result.partitions),
                snapshot_id=result.snapshot_id,
                quarantined=quarantined,
            )
        # Microseconds as integers: exact, where a datetime's float timestamp() can lose the last ms.
        newest_us = pc.max(batch.valid[declared.time_column].cast(pa.int64())).as_py()
        newest = newest_us // 1000 if newest_us is not None else None
        return BatchOutcome(
            fetched=batch.input_count,
            stored=result.rows_inserted + result.rows_updated,
            unchanged=result.rows_unchanged,
            quarantined=batch.quarantine.num_rows,
            newest_ms=newest,
        )

    def _fail(self, run: RunRecord, error: PhloError, totals: _Totals) -> RunRecord:
        # Reported once, by whoever started the run (the command line, the dashboard, the daemon's log).
        log.info("run failed: %s", error)
        return self.store.finish_run(
            run.id,
            RunStatus.FAILED,
            error=error.message,
            hint=error.hint or None,
            summary={**totals.summary(), "transient": error.transient},
        )
