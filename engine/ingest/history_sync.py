"""A run's second incremental source on a site with API v3: every change to entries and treatments
since the sync position (the last `srvModified` stored per collection), deletions and edits of
records of any age included (docs/closed-loop.md, "Edits and deletions after ingest").

The position moves only after the lake has committed the page that reached it, as the watermark
does: a run that dies in between reads that page again, and the merge makes the repeat free.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from engine.ingest.nightscout import NightscoutConfig, redact_url
from engine.ingest.nightscout_http import EndpointNotFound
from engine.ingest.nightscout_v3 import HistoryClient, position_key
from engine.ingest.sources import GLUCOSE, SOURCES, Source

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.runs.store import RunStore

log = logging.getLogger(__name__)

V1_ONLY = "v1"
V3_HISTORY = "v3-history"


class _Totals(Protocol):
    extra: dict[str, Any]

    def add(self, outcome: Any, source: Source = GLUCOSE) -> None: ...


class _Ingest(Protocol):
    store: RunStore

    def checkpoint(self) -> None: ...

    def _store_batch(
        self, run_id: str, declared: Source, entries: Sequence[object], *, source: str
    ) -> Any: ...


def ingest_history(
    pipeline: _Ingest,
    run_id: str,
    config: NightscoutConfig,
    totals: _Totals,
    since_ms: dict[str, int],
    client: HistoryClient | None = None,
) -> str:
    """Read each collection's changes since its position into raw; the API it used (`v1` when the
    site has no API v3 for this client: then the v1 windows' re-read is all there is). A collection
    without a position starts where this run's v1 window starts."""
    client = client or HistoryClient(config)
    why_not = client.available()
    if why_not is not None:
        log.info("API v3 history not used: %s; edits older than the re-read window go unseen", why_not)
        totals.extra["api"] = V1_ONLY
        return V1_ONLY
    changes: dict[str, int] = {}
    for source in SOURCES:
        key = position_key(source.name)
        position = pipeline.store.watermark(key)
        start = since_ms[source.name] if position is None else position
        changes[source.name] = 0
        try:
            for page in client.history(source.name, start):
                pipeline.checkpoint()
                documents = [d for d in page.documents if _belongs(source, d)]
                if documents:
                    outcome = pipeline._store_batch(run_id, source, documents, source=redact_url(config.url))
                    totals.add(outcome, source)
                    changes[source.name] += len(documents)
                # After the merge's commit: a crash before this line reads the page again.
                pipeline.store.advance_watermark(key, page.last_modified, run_id)
        except EndpointNotFound:
            log.info("the site has no API v3 history: read through API v1 only")
            totals.extra["api"] = V1_ONLY
            return V1_ONLY
    totals.extra["api"] = V3_HISTORY
    totals.extra["history_changes"] = changes
    return V3_HISTORY


def _belongs(source: Source, document: dict[str, Any]) -> bool:
    """The glucose table holds sensor readings: the history of entries also has finger-sticks and
    calibrations, which `entries/sgv.json` leaves out."""
    return source is not GLUCOSE or document.get("type", "sgv") == "sgv"
