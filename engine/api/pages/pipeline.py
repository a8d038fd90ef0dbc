"""The Runs, Branches and Quality pages' data: runs with their log lines, the branch diff, failed checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.api.pages.status import existing_tables
from engine.errors import PromotionError
from engine.runs.records import CheckRecord, PromotionRecord, RunRecord, Severity

if TYPE_CHECKING:
    from engine.api.facade import Engine
    from engine.lake.diff import TableDiff


def quarantines() -> tuple[str, ...]:
    """Each source's quarantine (glucose entries, treatments): the Quality page lists them together.

    Read when the page loads (in its worker): the sources' schemas import pandera and the lake."""
    from engine.ingest.sources import SOURCES

    return tuple(source.quarantine.name for source in SOURCES)


LOG_TAIL_BYTES = 256_000
QUARANTINE_ROWS = 200
"""The newest quarantined rows the Quality page lists."""


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


LAYERS = ("raw", "bronze", "silver", "gold", "marts")


def layer_order(diff: TableDiff) -> tuple[int, str]:
    """Raw first, marts last, by name within a layer: the engine lists models in build order, which
    interleaves the sources' tables once there are two of them."""
    layer = diff.table.split(".", 1)[0]
    return (LAYERS.index(layer) if layer in LAYERS else len(LAYERS), diff.table)


def load_branches(engine: Engine) -> BranchesSnapshot:
    """dev against main per table, and whether the last gate on dev lets a promotion through."""
    gate_errors = tuple(engine.gate_errors())
    try:
        diffs, error = tuple(sorted(engine.diff(), key=layer_order)), None
    except PromotionError as e:
        # Diverged branches are a state to show on the screen, not a failure of the screen.
        diffs, error = (), str(e)
    return BranchesSnapshot(diffs, gate_errors, engine.last_promotion(), error)


@dataclass(frozen=True)
class QuarantinedRow:
    source: str
    """The quarantine it is in: glucose (entries) or treatments."""
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
    quarantine_ratio_max: float = 0.05
    """The share of a batch the quarantine may take before the gate holds (engine.transform.quality)."""

    def quarantining(self) -> bool:
        """Whether error checks of raw tables are listed: their rows went to the quarantine and hold
        nothing by themselves (the quarantine-ratio check, also on a raw table, is the one that holds)."""
        return any(
            c.severity is Severity.ERROR and c.table.startswith("raw.") and c.check != "quarantine_ratio"
            for c in self.checks
        )


def load_quality(engine: Engine) -> QualitySnapshot:
    """Failed checks of the recent runs and the newest quarantined raw rows (on dev, where runs write)."""
    checks = tuple(engine.quality())
    started = {r.id: r.started_at for r in engine.list_runs(50)}
    rows: Sequence[dict[str, Any]] = ()
    tables = existing_tables(engine)
    selects = [
        f"select '{name.removeprefix('raw.').removesuffix('_quarantine')}' as source, "
        f'entry_id, "check", reason, payload, quarantined_at from {name}'
        for name in quarantines()
        if name in tables
    ]
    if selects:
        rows = engine.query(
            f"{' union all '.join(selects)} order by quarantined_at desc, source, entry_id limit {QUARANTINE_ROWS}",
            "dev",
        ).records()
    quarantine = tuple(
        QuarantinedRow(
            str(r["source"]),
            str(r["entry_id"]),
            str(r["check"]),
            str(r["reason"]),
            str(r["payload"]),
            r["quarantined_at"],
        )
        for r in rows
    )
    from engine.transform.quality import QUARANTINE_RATIO_MAX  # loaded with the engine: this runs in a worker

    return QualitySnapshot(checks, started, quarantine, QUARANTINE_RATIO_MAX)
