"""A CSV export (engine.ingest.imports.CsvExport) into the lake a checked slice at a time, within a pipeline run."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.ingest.imports.quarantine import merged_checks
from engine.ingest.sources import GLUCOSE, TREATMENTS_SOURCE, Source
from engine.ingest.tables import IMPORT_RECORDS
from engine.ingest.validation import CheckResult
from engine.pipeline_batch import append_quarantine, record_checks
from engine.runs.records import Severity
from engine.transform.layers import touched_months

if TYPE_CHECKING:
    from engine.ingest.imports.common import CsvImport
    from engine.ingest.imports.csv_export import CsvExport
    from engine.pipeline import Pipeline
    from engine.pipeline_totals import _Totals

CHUNK = 100_000
BUILD_BATCH_MONTHS = 9
"""Local months an import's build takes at once (engine.pipeline's 6 for a fetch): the import's
slices free the file's memory before the build, so a five-year import's build in batches of 9 months
peaked at 504-551 MB, below its ingest's peak, in 7 batches instead of 11 (each has a fixed cost per model)."""


def store_import(pipeline: Pipeline, run_id: str, export: CsvExport, totals: _Totals) -> None:
    """Merge the export's readings, treatments and records into `dev`, and quarantine its bad records,
    a slice of whole local days at a time (memory stays bounded by the slice; each merge is one
    commit, and a crash between two leaves the lake readable and a re-import storing nothing twice).

    The run's summary counts the file's lines: each is stored (new or changed), unchanged (already in
    the lake), quarantined, or skipped (header, metadata, blank, a repeat of an earlier line, or a
    scan: kept as a marker, never a reading); they add up to the file's lines."""
    lake: dict[str, dict[str, int]] = {}
    skipped: Counter[str] = Counter()
    checks: list[CheckResult] = []
    for imported in export.slices():
        _store_slice(pipeline, run_id, imported, totals, lake)
        skipped.update(imported.skipped)
        checks.extend(imported.checks)
        del imported  # before the next slice is read, not after: one slice in memory at a time
    record_checks(pipeline.store, run_id, merged_checks(checks))
    totals.extra.update(
        lines=export.lines,
        skipped=sum(skipped.values()),
        skipped_by_reason=dict(skipped),
        format=export.fmt,
        timezone=export.timezone,
        date_order=export.date_order,
        lake=lake,
    )


def _store_slice(
    pipeline: Pipeline, run_id: str, imported: CsvImport, totals: _Totals, lake: dict[str, dict[str, int]]
) -> None:
    source = f"{imported.fmt} export"
    for declared, count in ((GLUCOSE, imported.entry_count), (TREATMENTS_SOURCE, len(imported.treatments))):
        for start in range(0, count, CHUNK):
            pipeline.checkpoint()
            shaped = (
                imported.entry_batch(start, start + CHUNK)
                if declared is GLUCOSE
                else imported.treatments[start : start + CHUNK]
            )
            outcome = pipeline._store_batch(run_id, declared, shaped, source=source, time_ids=True)
            counts = lake.setdefault(
                declared.table.name, dict.fromkeys(("stored", "unchanged", "quarantined"), 0)
            )
            counts["stored"] += outcome.stored
            counts["unchanged"] += outcome.unchanged
            counts["quarantined"] += outcome.quarantined
    pipeline.checkpoint()
    now = pipeline._clock()
    with pipeline.store.step(run_id, "merge", {"source": "import records"}) as step:
        records = _merge(pipeline, run_id, _stamped(imported.records, run_id, now))
        scans = _merge(pipeline, run_id, _stamped(imported.scans, run_id, now))
        quarantined = append_quarantine(
            pipeline.lake, GLUCOSE, _quarantine_table(imported, run_id, source, now), run_id
        )
        step.rows = records[0] + scans[0]
        step.detail.update(
            stored=records[0], unchanged=records[1], scans=imported.scans.num_rows, quarantined=quarantined
        )
    totals.fetched += imported.lines
    totals.stored += records[0]
    totals.unchanged += records[1]
    totals.quarantined += len(imported.quarantine)
    # The quarantine-ratio gate judges the export's data records, as it judges a fetch's.
    _count(
        totals,
        GLUCOSE,
        imported.records.num_rows + imported.scans.num_rows + len(imported.quarantine),
        len(imported.quarantine),
    )


def _count(totals: _Totals, declared: Source, received: int, quarantined: int) -> None:
    counts = totals.by_source.setdefault(
        declared.name, dict.fromkeys(("fetched", "stored", "unchanged", "quarantined"), 0)
    )
    counts["fetched"] += received
    counts["quarantined"] += quarantined


def _merge(pipeline: Pipeline, run_id: str, rows: pa.Table) -> tuple[int, int]:
    """(stored, unchanged) rows of one merge into raw.import_records; its local months marked pending."""
    already = pipeline.store.pending_months()
    months = touched_months(rows, "record_ts", pipeline.settings.timezone)
    pipeline.store.add_pending_months(months, run_id)
    result = pipeline.lake.merge(
        IMPORT_RECORDS, rows, snapshot_properties={"phlo.run-id": run_id}, time_keyed=True
    )
    if result.snapshot_id is None:
        pipeline.store.clear_pending_months(months - already)
    return result.rows_inserted + result.rows_updated, result.rows_unchanged


def _stamped(rows: pa.Table, run_id: str, now: datetime) -> pa.Table:
    count = rows.num_rows
    return rows.append_column(
        "_phlo_ingested_at", pa.array([now] * count, pa.timestamp("us", tz="UTC"))
    ).append_column("_phlo_run_id", pa.array([run_id] * count, pa.string()))


def _quarantine_table(imported: CsvImport, run_id: str, source: str, now: datetime) -> pa.Table:
    rows: dict[str, list[Any]] = {name: [] for name in GLUCOSE.quarantine.arrow_schema.names}
    for bad in imported.quarantine:
        rows["run_id"].append(run_id)
        rows["entry_id"].append(bad["entry_id"])
        rows["check"].append(bad["check"])
        rows["column"].append(bad["column"])
        rows["severity"].append(Severity.ERROR.value)
        rows["reason"].append(bad["reason"])
        rows["payload"].append(bad["payload"])
        rows["source"].append(source)
        rows["quarantined_at"].append(now)
    return pa.Table.from_pydict(rows, schema=GLUCOSE.quarantine.arrow_schema)
