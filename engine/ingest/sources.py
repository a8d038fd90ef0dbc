"""The declared Nightscout sources: what the pipeline fetches, validates and merges, one declaration each.

Adding a source (exercise, meals, ...) is a declaration here, its raw `TableDef`s in
`engine/ingest/tables.py`, a pandera model in `schemas/raw.py`, and SQL models under `sql/`: the
pipeline loops over `SOURCES`, validation and storage follow the `RawSpec`, and the model runner
finds the SQL by its table references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.ingest.endpoints import ENTRIES_ENDPOINT, TREATMENTS_ENDPOINT
from engine.ingest.nightscout import TimeField
from engine.ingest.tables import TREATMENTS, TREATMENTS_QUARANTINE, TableDef
from engine.ingest.validation import GLUCOSE_ENTRIES_SPEC, RawSpec, ValidatedBatch, validate_records
from schemas.raw import RAW_TREATMENTS_SCHEMA, TREATMENT_SOURCE_KEYS, RawTreatments


@dataclass(frozen=True)
class Source:
    """One Nightscout endpoint and where its records land."""

    name: str
    path: str
    """Endpoint under /api/v1/."""
    raw: RawSpec
    """How its records are validated and stored; its `time` field is also what the site filters
    and pages on (`date` epoch ms, `created_at` ISO text compared as strings, whose queries reach
    the field's `margin_ms` beyond each window, so the windows after a watermark start that much
    earlier)."""
    watermark_key: str
    """Run-store key of this source's watermark: the newest record time stored."""
    optional: bool = False
    """A site answering 404 for the endpoint only warns: not every site has every collection."""
    ratio_min_records: int = 1
    """Records a run must receive before its quarantined share can hold the run (`quarantine_ratio`)."""

    @property
    def table(self) -> TableDef:
        return self.raw.table

    @property
    def quarantine(self) -> TableDef:
        return self.raw.quarantine

    @property
    def time_field(self) -> TimeField:
        return self.raw.time

    @property
    def time_column(self) -> str:
        return self.raw.time_column

    def validate_batch(
        self, records: Sequence[object], *, run_id: str, source: str, now: datetime
    ) -> ValidatedBatch:
        """`validate_records` with the run's clock as both the validation clock and the stamp."""
        return validate_records(self.raw, records, run_id=run_id, source=source, now=now, ingested_at=now)


GLUCOSE = Source(
    name=ENTRIES_ENDPOINT.name,
    path=ENTRIES_ENDPOINT.path,
    raw=GLUCOSE_ENTRIES_SPEC,
    watermark_key=ENTRIES_ENDPOINT.watermark_key,
)

TREATMENTS_SOURCE = Source(
    name=TREATMENTS_ENDPOINT.name,
    path=TREATMENTS_ENDPOINT.path,
    raw=RawSpec(
        model=RawTreatments,
        schema=RAW_TREATMENTS_SCHEMA,
        source_keys=TREATMENT_SOURCE_KEYS,
        table=TREATMENTS,
        quarantine=TREATMENTS_QUARANTINE,
        time=TREATMENTS_ENDPOINT.time_field,
        time_column="treatment_ts",
    ),
    watermark_key=TREATMENTS_ENDPOINT.watermark_key,
    optional=True,
    # A handful a day: one bad record in an hourly run would be 100 %, which says nothing about
    # the source's shape. Each still shows in quarantine and as its failed check.
    ratio_min_records=100,
)

SOURCES: tuple[Source, ...] = (GLUCOSE, TREATMENTS_SOURCE)
