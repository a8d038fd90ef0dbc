"""What a run's batches did to the lake, counted over every source (engine.pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.ingest.sources import GLUCOSE, Source
from engine.ingest.validation import CheckResult
from engine.transform.quality import quarantine_ratio_check


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch (a fetch window or an import chunk) did to the lake."""

    fetched: int
    stored: int
    unchanged: int
    quarantined: int
    newest_ms: int | None


class _Totals:
    """Row counts over every source of a run, and per source."""

    def __init__(self) -> None:
        self.fetched = self.stored = self.unchanged = self.quarantined = 0
        self.by_source: dict[str, dict[str, int]] = {}
        self.not_served: list[str] = []
        self.extra: dict[str, Any] = {}
        """More of the summary: what an import of a CSV export counts (engine.pipeline_import)."""

    def add(self, outcome: BatchOutcome, source: Source = GLUCOSE) -> None:
        self.fetched += outcome.fetched
        self.stored += outcome.stored
        self.unchanged += outcome.unchanged
        self.quarantined += outcome.quarantined
        counts = self.by_source.setdefault(source.name, dict.fromkeys(_COUNTS, 0))
        for name in _COUNTS:
            counts[name] += getattr(outcome, name)

    def quarantine_ratio(self, source: Source) -> CheckResult | None:
        """The quarantine-ratio gate of one source, when it received enough records to judge by."""
        counts = self.by_source.get(source.name)
        if counts is None or counts["fetched"] < source.ratio_min_records:
            return None
        return quarantine_ratio_check(counts["fetched"], counts["quarantined"], source.table.name)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "fetched": self.fetched,
            "stored": self.stored,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
        }
        if len(self.by_source) > 1 or self.not_served:
            summary["sources"] = {name: dict(counts) for name, counts in self.by_source.items()}
        if self.not_served:
            summary["not_served"] = list(self.not_served)
        summary.update(self.extra)
        return summary


_COUNTS = ("fetched", "stored", "unchanged", "quarantined")
