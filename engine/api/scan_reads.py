"""Reads of the glucose scans that CSV imports store (LibreView record type 1): the dashboard draws them
as markers beside the trace, never as readings, so that no metric counts them (a scan is taken when the
person chose to look, and counting scans skews the bands).

A home without imports (no raw.import_records) reads as no scans, never as an error. Imports nothing
heavy, like engine.api.treatment_reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.lake.views import LakeReader

IMPORT_RECORDS = "raw.import_records"
"""engine.ingest.tables.IMPORT_RECORDS by name (not imported: that module imports pyiceberg)."""
SCAN_KIND = "scan"


def load_scans(
    lake: LakeReader, branch: str, since: datetime, until: datetime
) -> tuple[tuple[datetime, int], ...]:
    """Scans between two instants as (instant, mg/dL), oldest first; none without imported records."""
    if not lake.has_table(IMPORT_RECORDS):
        return ()
    rows = lake.query(
        "select record_ts, glucose_mg_dl from raw.import_records "
        "where record_kind = $kind and glucose_mg_dl is not null "
        "and record_ts >= $since and record_ts <= $until order by record_ts",
        branch,
        params={"kind": SCAN_KIND, "since": since, "until": until},
    ).rows
    return tuple((ts, int(mg)) for ts, mg in rows)
