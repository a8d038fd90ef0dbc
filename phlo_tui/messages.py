"""Messages the app's workers post when their work is done, named in the past tense."""

from __future__ import annotations

from textual.message import Message

from engine.runstore import RunRecord
from phlo_tui.snapshot import PipelineStatus


class StatusPolled(Message):
    def __init__(self, status: PipelineStatus) -> None:
        super().__init__()
        self.status = status


class RunFinished(Message):
    def __init__(self, run: RunRecord | None, queued: bool) -> None:
        super().__init__()
        self.run = run
        self.queued = queued


class PromotionFinished(Message):
    def __init__(self, promotion_id: int | None) -> None:
        super().__init__()
        self.promotion_id = promotion_id
