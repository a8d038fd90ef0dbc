"""One run of the pipeline: fetch windows from Nightscout, validate, merge into the lake on `dev`."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.config import Settings
from engine.errors import PhloError, SourceError
from engine.lake import Lake
from engine.nightscout import FetchWindow, NightscoutConfig, fetch_window, plan_windows, redact_url
from engine.runstore import CheckRecord, RunRecord, RunStatus, RunStore, RunTrigger
from engine.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE, RAW_TABLES
from engine.validation import ValidatedBatch, validate_glucose_entries

log = logging.getLogger(__name__)

ENTRIES_SOURCE = "nightscout:entries"
HOUR_MS = 3_600_000
# Entries dated up to an hour ahead are accepted (clock skew); fetch that far so none is missed.
FUTURE_SLACK_MS = HOUR_MS
IMPORT_CHUNK = 100_000


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch (a fetch window or an import chunk) did to the lake."""

    fetched: int
    stored: int
    unchanged: int
    quarantined: int
    newest_ms: int | None


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.lake = lake
        self._nightscout = nightscout
        self._clock = clock

    def ensure_tables(self) -> None:
        for tdef in RAW_TABLES:
            self.lake.ensure_table(tdef)

    # entry points

    def run(self, trigger: RunTrigger = RunTrigger.MANUAL) -> RunRecord:
        """Incremental run from the watermark (or the last `initial_days` on a first run)."""
        now = self._clock()
        watermark = self.store.watermark(ENTRIES_SOURCE)
        if watermark is None:
            since_ms = _now_ms(now - timedelta(days=self.settings.initial_days))
        else:
            since_ms = watermark + 1 - self.settings.lookback_minutes * 60_000
        until_ms = _now_ms(now) + FUTURE_SLACK_MS
        return self._run_windows(trigger, since_ms, until_ms, {"since_ms": since_ms, "watermark": watermark})

    def backfill(self, since: str, until: str | None = None) -> RunRecord:
        """History from local day `since` up to the end of local day `until` (default: now)."""
        start = _parse_day(since, self.settings.timezone)
        end = _parse_day(until, self.settings.timezone) + timedelta(days=1) if until else self._clock()
        if end <= start:
            raise PhloError(
                f"--until {until} is before --since {since}", "give an --until on or after --since"
            )
        until_ms = min(_now_ms(end), _now_ms(self._clock()) + FUTURE_SLACK_MS)
        params = {"since": since, "until": until}
        return self._run_windows(RunTrigger.BACKFILL, _now_ms(start), until_ms, params)

    def import_file(self, path: Path) -> RunRecord:
        """A Nightscout entries export (JSON array, plain or gzip) through the same validation and merge."""
        entries = read_export(path)
        run = self.store.create_run(RunTrigger.IMPORT, {"file": path.name, "entries": len(entries)})
        totals = _Totals()
        try:
            self.ensure_tables()
            for offset in range(0, max(len(entries), 1), IMPORT_CHUNK):
                chunk = entries[offset : offset + IMPORT_CHUNK]
                with self.store.step(run.id, "read", {"offset": offset}) as step:
                    step.rows = len(chunk)
                totals.add(self._store_batch(run.id, chunk, source=path.name))
        except PhloError as e:
            return self._fail(run, e, totals)
        except Exception as e:
            self._fail(
                run,
                PhloError(f"internal error: {type(e).__name__}: {e}", "please report it"),
                totals,
            )
            raise
        return self.store.finish_run(run.id, RunStatus.SUCCEEDED, summary=totals.summary())

    # the work

    def _run_windows(
        self, trigger: RunTrigger, since_ms: int, until_ms: int, params: dict[str, Any]
    ) -> RunRecord:
        windows = plan_windows(since_ms, until_ms, self.settings.backfill_window_days)
        run = self.store.create_run(trigger, {**params, "until_ms": until_ms, "windows": len(windows)})
        totals = _Totals()
        try:
            self.ensure_tables()
            config = self._nightscout()
            for index, window in enumerate(windows, start=1):
                entries = self._fetch(run.id, config, window, index, len(windows))
                outcome = self._store_batch(run.id, entries, source=redact_url(config.url))
                totals.add(outcome)
                if outcome.newest_ms is not None:
                    self.store.advance_watermark(ENTRIES_SOURCE, outcome.newest_ms, run.id)
        except PhloError as e:
            return self._fail(run, e, totals)
        except Exception as e:
            self._fail(
                run,
                PhloError(f"internal error: {type(e).__name__}: {e}", "please report it"),
                totals,
            )
            raise
        return self.store.finish_run(run.id, RunStatus.SUCCEEDED, summary=totals.summary())

    def _fetch(
        self, run_id: str, config: NightscoutConfig, window: FetchWindow, index: int, count: int
    ) -> list[dict[str, Any]]:
        detail = {
            "window": index,
            "windows": count,
            "start": datetime.fromtimestamp(window.start_ms / 1000, UTC).isoformat(),
            "end": datetime.fromtimestamp(window.end_ms / 1000, UTC).isoformat(),
        }
        with self.store.step(run_id, "fetch", detail) as step:
            entries = fetch_window(config, window)
            step.rows = len(entries)
        return entries

    def _store_batch(self, run_id: str, entries: Sequence[object], *, source: str) -> BatchOutcome:
        now = self._clock()
        with self.store.step(run_id, "validate") as step:
            batch = validate_glucose_entries(entries, run_id=run_id, source=source, now=now, ingested_at=now)
            step.rows = batch.valid.num_rows
            step.detail.update(quarantined=batch.quarantine.num_rows, input=batch.input_count)
            self._record_checks(run_id, batch)
        with self.store.step(run_id, "merge") as step:
            result = self.lake.merge(
                GLUCOSE_ENTRIES, batch.valid, snapshot_properties={"phlo.run-id": run_id}
            )
            quarantined = self._quarantine(batch.quarantine, run_id)
            step.rows = result.rows_inserted + result.rows_updated
            step.detail.update(
                inserted=result.rows_inserted,
                updated=result.rows_updated,
                unchanged=result.rows_unchanged,
                partitions=list(result.partitions),
                snapshot_id=result.snapshot_id,
                quarantined=quarantined,
            )
        newest = pc.max(batch.valid["date"]).as_py() if batch.valid.num_rows else None
        return BatchOutcome(
            fetched=batch.input_count,
            stored=result.rows_inserted + result.rows_updated,
            unchanged=result.rows_unchanged,
            quarantined=batch.quarantine.num_rows,
            newest_ms=newest,
        )

    def _record_checks(self, run_id: str, batch: ValidatedBatch) -> None:
        if batch.results:
            self.store.record_checks(
                [
                    CheckRecord(
                        run_id=run_id,
                        check=r.check,
                        table=r.table,
                        column=r.column,
                        severity=str(r.severity.value),
                        failing_count=r.failing_count,
                        samples=r.samples,
                    )
                    for r in batch.results
                ]
            )

    def _quarantine(self, rows: pa.Table, run_id: str) -> int:
        """Append rows not quarantined before: an incremental run re-reads its lookback and would repeat them."""
        if rows.num_rows == 0:
            return 0
        known = self.lake.read_arrow(GLUCOSE_QUARANTINE.name, "dev", columns=["entry_id", "check", "payload"])
        if known.num_rows:
            seen = set(zip(*(known[c].to_pylist() for c in ("entry_id", "check", "payload")), strict=True))
            keep = [
                (e, c, p) not in seen
                for e, c, p in zip(
                    *(rows[c].to_pylist() for c in ("entry_id", "check", "payload")), strict=True
                )
            ]
            rows = rows.filter(pa.array(keep, pa.bool_()))
        if rows.num_rows:
            self.lake.append(GLUCOSE_QUARANTINE, rows, snapshot_properties={"phlo.run-id": run_id})
        return rows.num_rows

    def _fail(self, run: RunRecord, error: PhloError, totals: _Totals) -> RunRecord:
        log.error("run %s failed: %s", run.id, error)
        return self.store.finish_run(
            run.id,
            RunStatus.FAILED,
            error=error.message,
            hint=error.hint or None,
            summary=totals.summary(),
        )


class _Totals:
    def __init__(self) -> None:
        self.fetched = self.stored = self.unchanged = self.quarantined = 0

    def add(self, outcome: BatchOutcome) -> None:
        self.fetched += outcome.fetched
        self.stored += outcome.stored
        self.unchanged += outcome.unchanged
        self.quarantined += outcome.quarantined

    def summary(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "stored": self.stored,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
        }


def read_export(path: Path) -> list[object]:
    """Entries of a Nightscout export: a JSON array, optionally gzip-compressed (detected by content)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file", "check the path of the export") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}", "check the file's permissions") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise SourceError(f"{path}: a damaged gzip file: {e}", "export it again") from e
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(
            f"{path}: not a JSON file: {e}",
            "export entries from Nightscout as JSON (/api/v1/entries.json)",
        ) from e
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        data = data["entries"]
    if not isinstance(data, list):
        raise SourceError(
            f"{path}: expected a JSON array of entries, got {type(data).__name__}",
            "export entries from Nightscout as JSON (/api/v1/entries.json)",
        )
    return list(data)
