"""The Nightscout endpoints a run reads, declared lightly: what the prefetch child (engine.ingest.prefetch)
needs to plan and read a run's windows while the parent still imports the engine, without pandas, pandera or
pyiceberg. Each declared source (engine.ingest.sources) is one of these plus how its records are validated
and stored, and takes its name, path and watermark from here."""

from __future__ import annotations

from dataclasses import dataclass

from engine.ingest.nightscout import CREATED_AT, DATE, ENTRIES_PATH, TREATMENTS_PATH, TimeField
from engine.runs.records import ENTRIES_WATERMARK


@dataclass(frozen=True)
class Endpoint:
    """One Nightscout collection a run fetches by time windows."""

    name: str
    path: str
    """Endpoint under /api/v1/."""
    time_field: TimeField
    """What the site filters and pages on (the source's raw spec dates its records by the same field)."""
    watermark_key: str
    """Run-store key of the source's watermark: the newest record time stored."""


ENTRIES_ENDPOINT = Endpoint(
    name="entries", path=ENTRIES_PATH, time_field=DATE, watermark_key=ENTRIES_WATERMARK
)
TREATMENTS_ENDPOINT = Endpoint(
    name="treatments", path=TREATMENTS_PATH, time_field=CREATED_AT, watermark_key="nightscout:treatments"
)
ENDPOINTS: tuple[Endpoint, ...] = (ENTRIES_ENDPOINT, TREATMENTS_ENDPOINT)
"""In the order of engine.ingest.sources.SOURCES."""
