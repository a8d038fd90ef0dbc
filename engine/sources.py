"""The declared Nightscout sources: what the pipeline fetches, validates and merges, one declaration each.

Adding a source (exercise, meals, ...) is a declaration here, its raw `TableDef`s in
`engine/tables.py`, a pandera model in `schemas/raw.py` with its validator, and SQL models under
`sql/`; the pipeline loops over `SOURCES` and the model runner finds the SQL by its table references.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.nightscout import CREATED_AT, DATE, ENTRIES_PATH, TREATMENTS_PATH, TimeField
from engine.tables import GLUCOSE_ENTRIES, GLUCOSE_QUARANTINE, TREATMENTS, TREATMENTS_QUARANTINE, TableDef
from engine.validation import ValidatedBatch, validate_glucose_entries, validate_treatments

Validator = Callable[..., ValidatedBatch]
"""`(records, *, run_id, source, now, ingested_at) -> ValidatedBatch`, as `validate_glucose_entries`."""


@dataclass(frozen=True)
class Source:
    """One Nightscout endpoint and where its records land."""

    name: str
    path: str
    """Endpoint under /api/v1/."""
    time_field: TimeField
    """The record field the site filters and pages on (`date` epoch ms, `created_at` ISO text)."""
    table: TableDef
    """Raw table the valid records are merged into (by its key, per its partition)."""
    quarantine: TableDef
    """Raw table the records failing an error check are appended to, with their reasons."""
    validate: Validator
    time_column: str
    """Timestamptz column of `table` holding the record time (watermark and pending months)."""
    watermark_key: str
    """Run-store key of this source's watermark: the newest record time stored."""
    optional: bool = False
    """A site answering 404 for the endpoint only warns: not every site has every collection."""
    ratio_min_records: int = 1
    """Records a run must receive before its quarantined share can hold the run (`quarantine_ratio`)."""

    def validate_batch(
        self, records: Sequence[object], *, run_id: str, source: str, now: datetime
    ) -> ValidatedBatch:
        return self.validate(records, run_id=run_id, source=source, now=now, ingested_at=now)


GLUCOSE = Source(
    name="entries",
    path=ENTRIES_PATH,
    time_field=DATE,
    table=GLUCOSE_ENTRIES,
    quarantine=GLUCOSE_QUARANTINE,
    validate=validate_glucose_entries,
    time_column="reading_ts",
    watermark_key="nightscout:entries",
)

TREATMENTS_SOURCE = Source(
    name="treatments",
    path=TREATMENTS_PATH,
    time_field=CREATED_AT,
    table=TREATMENTS,
    quarantine=TREATMENTS_QUARANTINE,
    validate=validate_treatments,
    time_column="treatment_ts",
    watermark_key="nightscout:treatments",
    optional=True,
    # A handful a day: one bad record in an hourly run would be 100 %, which says nothing about
    # the source's shape. Each still shows in quarantine and as its failed check.
    ratio_min_records=100,
)

SOURCES: tuple[Source, ...] = (GLUCOSE, TREATMENTS_SOURCE)
