"""What a write command came to (engine.api.facade.Engine.execute), and a run's exit code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.runs.records import RunRecord, RunStatus

EXIT_CODES = {RunStatus.SUCCEEDED: 0, RunStatus.FAILED: 1, RunStatus.HELD: 3}


@dataclass(frozen=True)
class Outcome:
    """What a write command came to, whether this process ran it or the daemon that owns the home did."""

    exit_code: int
    run: RunRecord | None = None
    promotion: dict[str, Any] | None = None
    """promote: the promotion recorded (its to_json()), None when main already equalled dev."""
    staging: Path | None = None
    """backup_cut: where the consistent cut was staged."""
    queued_to: int | None = None
    """The pid of the daemon that ran it; None when it ran in this process."""

    def result(self) -> dict[str, Any]:
        """The command's result as the run store keeps it for the process that queued it."""
        if self.run is not None:
            return {"run": self.run.to_json()}
        if self.staging is not None:
            return {"staging": str(self.staging)}
        return {"promotion": self.promotion}


def exit_code(run: RunRecord) -> int:
    return EXIT_CODES.get(run.status, 1)
