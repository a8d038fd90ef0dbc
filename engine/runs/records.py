"""The run store's records: what a run, a step, a check, a command, the lease and a promotion look like
when read back. Plain frozen dataclasses and enums; importing this module imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

ENTRIES_WATERMARK = "nightscout:entries"
"""Run-store key of the glucose entries' watermark (engine/ingest/sources.py): the newest reading stored."""


class Severity(StrEnum):
    """How a failed check acts: an error quarantines the entry, a warning only reports it."""

    ERROR = "error"
    WARNING = "warning"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    HELD = "held"
    FAILED = "failed"

    ACTIVE: ClassVar[frozenset[RunStatus]]
    FINISHED: ClassVar[frozenset[RunStatus]]


RunStatus.ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING})
RunStatus.FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.HELD, RunStatus.FAILED})


class RunTrigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"
    IMPORT = "import"
    MAINTENANCE = "maintenance"


class StepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    seq: int
    name: str
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    rows: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else (self.finished_at - self.started_at).total_seconds()

    @property
    def label(self) -> str:
        """The name with what it worked on: `fetch glucose 3/12`, `validate treatments`."""
        parts = [self.name]
        source = self.detail.get("source")
        if isinstance(source, str):
            parts.append(source)
        window, windows = self.detail.get("window"), self.detail.get("windows")
        if isinstance(window, int) and isinstance(windows, int) and windows > 1:
            parts.append(f"{window}/{windows}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "name": self.name,
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "seconds": self.seconds,
            "rows": self.rows,
            "error": self.error,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RunSummary:
    """The figures a run's summary holds that the command line and the dashboard show, typed; the run
    store keeps the whole summary as JSON (`RunRecord.summary`, which `status --json` prints)."""

    fetched: int | None = None
    stored: int | None = None
    unchanged: int | None = None
    quarantined: int | None = None
    lines: int | None = None
    """An import's: the file's lines, each stored, unchanged, quarantined or skipped."""
    skipped: int | None = None
    gate: str | None = None
    promotion: int | None = None
    """The id of the promotion the run made."""
    transient: bool = False
    """The run failed for a reason that may pass (the site or the database down): worth a retry."""
    attempt: int | None = None
    next_attempt_at: datetime | None = None

    @classmethod
    def from_json(cls, summary: dict[str, Any]) -> RunSummary:
        def count(key: str) -> int | None:
            value = summary.get(key)
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        gate = summary.get("gate")
        promotion = summary.get("promotion")
        attempt_at = summary.get("next_attempt_at")
        return cls(
            fetched=count("fetched"),
            stored=count("stored"),
            unchanged=count("unchanged"),
            quarantined=count("quarantined"),
            lines=count("lines"),
            skipped=count("skipped"),
            gate=gate if isinstance(gate, str) else None,
            promotion=promotion if isinstance(promotion, int) and not isinstance(promotion, bool) else None,
            transient=summary.get("transient") is True,
            attempt=count("attempt"),
            next_attempt_at=datetime.fromisoformat(attempt_at) if isinstance(attempt_at, str) else None,
        )


@dataclass(frozen=True)
class RunRecord:
    id: str
    trigger: RunTrigger
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    hint: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    steps: tuple[StepRecord, ...] = ()

    @property
    def totals(self) -> RunSummary:
        """The summary's figures, typed."""
        return RunSummary.from_json(self.summary)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "trigger": self.trigger.value,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": self.error,
            "hint": self.hint,
            "params": self.params,
            "summary": self.summary,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True)
class CheckRecord:
    run_id: str
    check: str
    table: str
    column: str | None
    severity: Severity
    failing_count: int
    samples: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "check": self.check,
            "table": self.table,
            "column": self.column,
            "severity": self.severity,
            "failing_count": self.failing_count,
            "samples": list(self.samples),
        }


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class CommandKind(StrEnum):
    """What a process queues to the daemon that owns the home (engine.daemon.execute_command runs it)."""

    RUN = "run"
    BACKFILL = "backfill"
    IMPORT = "import"
    BACKUP_CUT = "backup_cut"
    PROMOTE = "promote"

    @classmethod
    def read(cls, text: str) -> CommandKind | str:
        """The kind as stored; a kind this version does not know (queued by a newer one) stays text."""
        try:
            return cls(text)
        except ValueError:
            return text


class CommandStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class CommandRecord:
    id: int
    kind: CommandKind | str
    args: dict[str, Any]
    status: CommandStatus
    created_at: datetime
    run_id: str | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class LeaseRecord:
    role: str
    pid: int
    host: str
    acquired_at: datetime
    heartbeat_at: datetime
    next_run_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "pid": self.pid,
            "host": self.host,
            "since": _iso(self.acquired_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "next_run_at": _iso(self.next_run_at),
        }


class PromotionState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class PromotionRecord:
    id: int
    run_id: str | None
    state: PromotionState
    created_at: datetime
    finished_at: datetime | None
    tables: dict[str, dict[str, int | None]]

    def snapshot(self, table: str) -> int | None:
        entry = self.tables.get(table)
        return None if entry is None else entry.get("to")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "state": self.state.value,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
            "tables": self.tables,
        }


@dataclass
class StepHandle:
    """What a running step reports back to its wrapper."""

    rows: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
