"""Treatments the site no longer serves: removed through API v1 (`DELETE /api/v1/treatments/<_id>`,
Loop's and xDrip's deletions) or API v3 (`?permanent=true`), which leaves no trace in the history
(docs/closed-loop.md, "What is still missed").

A v1 window is a full listing of the documents whose `created_at` text sorts between the bounds the
query sent (the site compares text, engine/ingest/nightscout.py `TimeField`). A row raw holds in
those bounds, valid, served by API v1 (its key an ObjectId), that the window did not return, was
removed: a copy with `is_valid` false is merged, so every layer drops it on the next build, and a
document served again later is merged back as valid. Rows an import wrote are never served by the
site and are left alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan, Reference
from pyiceberg.expressions.literals import literal

from engine.ingest.imports.lake_rows import ENTERED_BY
from engine.ingest.nightscout import FetchWindow
from engine.ingest.sources import TREATMENTS_SOURCE, Source
from engine.transform.layers import touched_months

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.lake.store import Lake
    from engine.runs.store import RunStore

log = logging.getLogger(__name__)

_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class _Pipeline(Protocol):
    store: RunStore
    lake: Lake

    settings: Settings


def served_key(value: object) -> str | None:
    """A served `_id` or `identifier` as validation stores it: NUL characters removed
    (engine.ingest.validation), an Extended JSON `{"$oid": ...}` as its hex."""
    if isinstance(value, dict):
        value = value.get("$oid")
    return value.replace("\x00", "") if isinstance(value, str) else None


def removed_rows(stored: pa.Table, served: Sequence[object], *, run_id: str, now: datetime) -> pa.Table:
    """The `stored` rows (all within one window's bounds) the site did not serve again, as copies
    with `is_valid` false stamped by this run: valid rows keyed by an ObjectId, not imported."""
    keys: set[str] = set()
    for record in served:
        if isinstance(record, dict):
            keys.update(key for k in ("_id", "identifier") if (key := served_key(record.get(k))) is not None)
    ids = stored["_id"].to_pylist()
    entered = stored["entered_by"].to_pylist()
    valid = stored["is_valid"].to_pylist()
    keep = [
        valid_now is not False
        and _OBJECT_ID.fullmatch(key) is not None
        and key not in keys
        and not (isinstance(by, str) and by.startswith(ENTERED_BY))
        for key, by, valid_now in zip(ids, entered, valid, strict=True)
    ]
    gone = stored.filter(pa.array(keep, pa.bool_()))
    if gone.num_rows == 0:
        return gone
    stamped = {
        "is_valid": pa.array([False] * gone.num_rows, pa.bool_()),
        "_phlo_ingested_at": pa.array([now] * gone.num_rows, gone.schema.field("_phlo_ingested_at").type),
        "_phlo_run_id": pa.array([run_id] * gone.num_rows, pa.string()),
    }
    for name, values in stamped.items():
        gone = gone.set_column(gone.schema.get_field_index(name), gone.schema.field(name), values)
    return gone


def mark_removed(
    pipeline: _Pipeline,
    run_id: str,
    source: Source,
    window: FetchWindow,
    served: Sequence[Any],
    *,
    now: datetime,
) -> int:
    """Merge the treatments of `window` the site no longer serves as deleted; how many there were.
    Other sources are left alone (a removed reading stays: not done)."""
    if source is not TREATMENTS_SOURCE or not pipeline.lake.table_exists(source.table.name):
        return 0
    field = source.time_field
    low, high = field.bound(window.start_ms - field.margin_ms), field.bound(window.end_ms + field.margin_ms)
    stored = pipeline.lake.read_arrow(
        source.table.name,
        "dev",
        row_filter=And(
            GreaterThanOrEqual(term=Reference("created_at"), value=literal(str(low))),
            LessThan(term=Reference("created_at"), value=literal(str(high))),
        ),
    )
    gone = removed_rows(stored, served, run_id=run_id, now=now)
    if gone.num_rows == 0:
        return 0
    gone = gone.cast(source.table.arrow_schema)
    with pipeline.store.step(run_id, "merge", {"source": source.name, "removed": True}) as step:
        pipeline.store.add_pending_months(
            touched_months(gone, source.time_column, pipeline.settings.timezone), run_id
        )
        result = pipeline.lake.merge(source.table, gone, snapshot_properties={"phlo.run-id": run_id})
        step.rows = result.rows_updated
    log.info("%d treatments are no longer served by the site: stored as deleted", gone.num_rows)
    return gone.num_rows
