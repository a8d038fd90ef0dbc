"""The run store and the writer as the pipeline bar shows them, polled every few seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from engine.runstore import LeaseRecord, PromotionRecord, RunRecord, RunStatus

if TYPE_CHECKING:
    from engine.daemon import Freshness
    from engine.facade import Engine


@dataclass(frozen=True)
class PipelineStatus:
    """The run store and the writer, polled every few seconds."""

    now: datetime
    runs: tuple[RunRecord, ...]
    gate_errors: tuple[str, ...]
    daemon: LeaseRecord | None
    freshness: Freshness
    last_promotion: PromotionRecord | None
    next_run: datetime | None
    planned_steps: int

    @property
    def latest(self) -> RunRecord | None:
        return self.runs[0] if self.runs else None

    @property
    def active(self) -> RunRecord | None:
        return next((r for r in self.runs if r.status in RunStatus.ACTIVE), None)

    @property
    def data_version(self) -> tuple[object, ...]:
        """Changes when the lake may have changed: a run finished, a promotion happened."""
        finished = next((r for r in self.runs if r.status in RunStatus.FINISHED), None)
        return (
            finished.id if finished else None,
            self.last_promotion.id if self.last_promotion else None,
            self.gate_errors,
        )

    @property
    def runs_version(self) -> tuple[object, ...]:
        return tuple(
            (r.id, r.status, len(r.steps), r.steps[-1].status if r.steps else None) for r in self.runs
        )


def load_status(engine: Engine, now: datetime, next_run: datetime | None) -> PipelineStatus:
    from engine.daemon import freshness  # imports the lake: loaded in the worker, not at start-up

    # From the run store alone: a poll runs every half second during a run and must stay cheap.
    daemon = engine.daemon()
    warning = timedelta(minutes=engine.settings.freshness_warning_minutes)
    # The engine's freshness reads the wall clock; the app's clock is injectable (snapshot tests).
    fresh = freshness(engine.watermark_ms(), now, warning)
    # Steps of a run besides ingest (three per fetch window): one per model, the gates, the promotion.
    planned = len(engine.models()) + 1 + (1 if engine.settings.auto_promote else 0)
    return PipelineStatus(
        now=now,
        runs=tuple(engine.list_runs(20)),
        gate_errors=tuple(engine.gate_errors()),
        daemon=daemon,
        freshness=fresh,
        last_promotion=engine.last_promotion(),
        next_run=daemon.next_run_at if daemon is not None else next_run,
        planned_steps=planned,
    )


def existing_tables(engine: Engine) -> dict[str, dict[str, int | None]]:
    """Lake tables that exist, with their dev and main snapshot ids."""
    tables: dict[str, dict[str, int | None]] = engine.status()["tables"]
    return tables
