"""The Runs, Branches and Quality pages' data: runs with their log lines, the branch diff, failed checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.diff import TableDiff
from engine.errors import PromotionError
from engine.facade import Engine
from engine.runstore import CheckRecord, PromotionRecord, RunRecord
from phlo_tui.snapshot.status import existing_tables

QUARANTINE = "raw.glucose_quarantine"
LOG_TAIL_BYTES = 256_000


@dataclass(frozen=True)
class RunsSnapshot:
    runs: tuple[RunRecord, ...]
    selected: str | None
    log_lines: tuple[str, ...]
    log_path: Path


def load_runs(engine: Engine, selected: str | None, log_lines: int = 40) -> RunsSnapshot:
    """The newest runs with their steps, and the log lines of the selected run (the newest by default)."""
    runs = tuple(engine.list_runs(50))
    if selected is None or all(r.id != selected for r in runs):
        selected = runs[0].id if runs else None
    path = engine.settings.logs_dir / "phlo-tui.log"
    lines = tail_run_log(path, selected, log_lines) if selected else ()
    return RunsSnapshot(runs, selected, lines, path)


def tail_run_log(path: Path, run_id: str, count: int) -> tuple[str, ...]:
    """The last `count` lines of the log stamped `run=<run_id>`; none when there is no log file."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    marker = f"run={run_id}"
    return tuple([line for line in text.splitlines() if marker in line][-count:])


@dataclass(frozen=True)
class BranchesSnapshot:
    diffs: tuple[TableDiff, ...]
    gate_errors: tuple[str, ...]
    last_promotion: PromotionRecord | None
    diff_error: str | None = None

    @property
    def changed(self) -> tuple[TableDiff, ...]:
        return tuple(d for d in self.diffs if d.changed)


def load_branches(engine: Engine) -> BranchesSnapshot:
    """dev against main per table, and whether the last gate on dev lets a promotion through."""
    gate_errors = tuple(engine.status()["gate_errors"])
    try:
        diffs, error = tuple(engine.diff()), None
    except PromotionError as e:
        # Diverged branches are a state to show on the screen, not a failure of the screen.
        diffs, error = (), str(e)
    return BranchesSnapshot(diffs, gate_errors, engine.last_promotion(), error)


@dataclass(frozen=True)
class QuarantinedRow:
    entry_id: str
    check: str
    reason: str
    payload: str
    quarantined_at: datetime | None


@dataclass(frozen=True)
class QualitySnapshot:
    checks: tuple[CheckRecord, ...]
    run_started: dict[str, datetime]
    quarantine: tuple[QuarantinedRow, ...]


def load_quality(engine: Engine) -> QualitySnapshot:
    """Failed checks of the recent runs and the newest quarantined raw rows (on dev, where runs write)."""
    checks = tuple(engine.quality())
    started = {r.id: r.started_at for r in engine.list_runs(50)}
    rows: Sequence[dict[str, Any]] = ()
    if QUARANTINE in existing_tables(engine):
        rows = engine.query(
            'select entry_id, "check", reason, payload, quarantined_at from raw.glucose_quarantine '
            "order by quarantined_at desc limit 200",
            "dev",
        ).records()
    quarantine = tuple(
        QuarantinedRow(
            str(r["entry_id"]), str(r["check"]), str(r["reason"]), str(r["payload"]), r["quarantined_at"]
        )
        for r in rows
    )
    return QualitySnapshot(checks, started, quarantine)
