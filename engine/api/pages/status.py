"""The run store and the writer as the pipeline bar shows them, polled every few seconds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, TypeVar

from engine.runs.records import LeaseRecord, PromotionRecord, RunRecord, RunStatus
from engine.transform.freshness import Freshness, freshness

if TYPE_CHECKING:
    from engine.api.facade import Engine
    from engine.api.fastread import FastReader
    from engine.config import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")


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


class StatusSource(Protocol):
    """What the pipeline bar reads: the Engine, or at start-up the FastReader (run store only)."""

    settings: Settings

    def daemon(self) -> LeaseRecord | None: ...

    def watermark_ms(self) -> int | None: ...

    def model_count(self) -> int: ...

    def list_runs(self, limit: int = ...) -> list[RunRecord]: ...

    def gate_errors(self) -> list[str]: ...

    def last_promotion(self) -> PromotionRecord | None: ...


def load_status(source: StatusSource, now: datetime, next_run: datetime | None) -> PipelineStatus:
    # From the run store alone: a poll runs every half second during a run and must stay cheap.
    daemon = source.daemon()
    warning = timedelta(minutes=source.settings.freshness_warning_minutes)
    # The engine's freshness reads the wall clock; the app's clock is injectable (snapshot tests).
    fresh = freshness(source.watermark_ms(), now, warning)
    # Steps of a run besides ingest (three per fetch window): one per model, the gates, the promotion.
    planned = source.model_count() + 1 + (1 if source.settings.auto_promote else 0)
    return PipelineStatus(
        now=now,
        runs=tuple(source.list_runs(20)),
        gate_errors=tuple(source.gate_errors()),
        daemon=daemon,
        freshness=fresh,
        last_promotion=source.last_promotion(),
        next_run=daemon.next_run_at if daemon is not None else next_run,
        planned_steps=planned,
    )


def load_early_status(settings: Settings, now: datetime) -> PipelineStatus | None:
    """The pipeline bar before the engine is imported (engine.api.fastread), or None without a run store."""
    return read_early(settings, "status", lambda reader: load_status(reader, now, None))


def read_early(settings: Settings, what: str, read: Callable[[FastReader], _T]) -> _T | None:
    """`read` over a FastReader of the home, or None (logged) when what is recorded cannot answer."""
    from engine.api.fastread import FastReader, NotRecorded

    try:
        reader = FastReader(settings)
    except NotRecorded as e:
        log.info("no early %s: %s", what, e)
        return None
    try:
        return read(reader)
    except NotRecorded as e:
        log.info("no early %s: %s", what, e)
        return None
    finally:
        reader.close()


def existing_tables(engine: Engine) -> dict[str, dict[str, int | None]]:
    """Lake tables that exist, with their dev and main snapshot ids."""
    return engine.table_heads()
