"""Messages the app's workers post when their work is done, named in the past tense."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from engine.api.pages import PipelineStatus
from engine.runs.records import RunRecord

if TYPE_CHECKING:
    from engine.api.facade import Engine


class EngineReady(Message):
    """The engine, constructed in a worker after the first paint: the polls and the pages start now."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine


class StatusPolled(Message):
    def __init__(self, status: PipelineStatus, *, early: bool = False) -> None:
        super().__init__()
        self.status = status
        self.early = early
        """Read before the engine was there (engine.api.fastread): the engine's polls replace it."""


class RunFinished(Message):
    def __init__(self, run: RunRecord | None, queued: bool) -> None:
        super().__init__()
        self.run = run
        self.queued = queued


class PromotionFinished(Message):
    def __init__(self, promotion_id: int | None) -> None:
        super().__init__()
        self.promotion_id = promotion_id
