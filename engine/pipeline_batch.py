"""What a stored batch touches: the quarantine rows not kept before, the months a build takes in batches,
and the check results it records (engine.pipeline, engine.pipeline_import)."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import pyarrow as pa

from engine.ingest.sources import Source
from engine.ingest.validation import CheckResult
from engine.lake.store import Lake
from engine.runs.records import CheckRecord
from engine.runs.store import RunStore


def append_quarantine(lake: Lake, declared: Source, rows: pa.Table, run_id: str) -> int:
    """Append rows not quarantined before: an incremental run re-reads its lookback and would repeat them."""
    if rows.num_rows == 0:
        return 0
    known = lake.read_arrow(declared.quarantine.name, "dev", columns=["entry_id", "check", "payload"])
    if known.num_rows:
        seen = set(zip(*(known[c].to_pylist() for c in ("entry_id", "check", "payload")), strict=True))
        keep = [
            (e, c, p) not in seen
            for e, c, p in zip(*(rows[c].to_pylist() for c in ("entry_id", "check", "payload")), strict=True)
        ]
        rows = rows.filter(pa.array(keep, pa.bool_()))
    if rows.num_rows:
        lake.append(declared.quarantine, rows, snapshot_properties={"phlo.run-id": run_id})
    return rows.num_rows


def release_memory() -> None:
    """Hand what a long run's previous phase freed back to the OS: Arrow's allocator (mimalloc)
    keeps freed pages for reuse, so a five-year backfill's peak was its ingest's leftovers plus a
    build. Cheap next to a batch's build; an hourly run of one batch never calls it."""
    gc.collect()
    pa.default_memory_pool().release_unused()


def month_batches(months: set[str], size: int) -> list[set[str]]:
    """`months` in ascending batches of `size`, each after the first also holding the previous batch's
    last month: a model may read the months on either side (a bolus's 4 h after it), so a batch's last
    month is built again once the month after it exists."""
    ordered = sorted(months)
    if len(ordered) <= size:
        return [set(ordered)]
    return [set(ordered[max(start - 1, 0) : start + size]) for start in range(0, len(ordered), size)]


def record_checks(store: RunStore, run_id: str, results: Sequence[CheckResult]) -> None:
    """A batch's or a gate's check results, as the run's checks in the run store."""
    if results:
        store.record_checks(
            [
                CheckRecord(
                    run_id=run_id,
                    check=r.check,
                    table=r.table,
                    column=r.column,
                    severity=r.severity,
                    failing_count=r.failing_count,
                    samples=r.samples,
                )
                for r in results
            ]
        )
