"""What a stored batch touches: the local months to rebuild, and the quarantine rows not kept before
(engine.pipeline, engine.pipeline_import)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc

from engine.ingest.sources import Source
from engine.lake.store import Lake
from engine.transform.layers import local_months

HOUR_MS = 3_600_000
# Models may look this far across a record's time (the effectiveness mart reads glucose up to 4 h
# after a bolus and 1 h before): a record this close to a month's edge also marks the neighbour
# month pending, so rows there that read it are rebuilt too.
MODEL_REACH_MS = 4 * HOUR_MS


def touched_months(rows: pa.Table, time_column: str, timezone: str) -> set[str]:
    """Local months of the records, and of the instants `MODEL_REACH_MS` either side of them."""
    if rows.num_rows == 0:
        return set()
    times = rows[time_column].combine_chunks()
    reach = pa.scalar(timedelta(milliseconds=MODEL_REACH_MS), pa.duration("us"))
    shifted = pa.chunked_array([times, pc.subtract(times, reach), pc.add(times, reach)])
    return local_months(pa.table({"reading_ts": shifted}), timezone)


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
