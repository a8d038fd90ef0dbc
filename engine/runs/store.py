"""The run store: runs, steps, quality results and watermarks in SQLite (WAL), shared by every process."""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import PhloError, StepFailed
from engine.runs import database
from engine.runs.bookkeeping import LakeBookkeeping
from engine.runs.coordination import HomeCoordination
from engine.runs.records import (
    CheckRecord,
    RunRecord,
    RunStatus,
    RunTrigger,
    Severity,
    StepHandle,
    StepRecord,
    StepStatus,
    _iso,
    _ts,
)

log = logging.getLogger(__name__)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by time, unique across processes: 20261125T201530Z-3fa9c1."""
    return f"{(now or database.utcnow()).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def blocking_text(table: str, check: str, column: str | None, failing: int) -> str:
    """How a check that holds promotion is named to the user: `table: check on column (n failing)`."""
    return f"{table}: {check}" + (f" on {column}" if column else "") + f" ({failing} failing)"


class RunStore(LakeBookkeeping, HomeCoordination):
    """Run records in `runs.sqlite`: runs, steps and quality results here; the lake's bookkeeping
    (engine/runs/bookkeeping.py), the lease and the command queue (engine/runs/coordination.py) and the
    database itself (engine/runs/database.py) in its bases. Safe for several processes (WAL) and threads."""

    # runs

    def create_run(self, trigger: RunTrigger, params: dict[str, Any] | None = None) -> RunRecord:
        run = RunRecord(
            id=new_run_id(),
            trigger=trigger,
            status=RunStatus.RUNNING,
            started_at=database.utcnow(),
            params=params or {},
        )
        with self._tx() as con:
            con.execute(
                "insert into runs (id, trigger, status, started_at, params) values (?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.trigger.value,
                    run.status.value,
                    _iso(run.started_at),
                    json.dumps(run.params),
                ),
            )
        return run

    def mark_retrying(self, run_id: str, next_attempt_at: datetime, attempt: int) -> RunRecord:
        """A failed run whose error is transient, with the time of its next attempt."""
        run = self.get_run(run_id)
        summary = {**run.summary, "next_attempt_at": _iso(next_attempt_at), "attempt": attempt}
        with self._tx() as con:
            con.execute(
                "update runs set status = ?, summary = ? where id = ?",
                (RunStatus.RETRYING.value, json.dumps(summary, default=str), run_id),
            )
        return self.get_run(run_id)

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: str | None = None,
        hint: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> RunRecord:
        log.info("run finished: %s", status.value)
        with self._tx() as con:
            con.execute(
                "update runs set status = ?, finished_at = ?, error = ?, hint = ?, summary = ? where id = ?",
                (
                    status.value,
                    _iso(database.utcnow()),
                    error,
                    hint,
                    json.dumps(summary or {}, default=str),
                    run_id,
                ),
            )
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        runs = self._runs("where id = ?", (run_id,))
        if not runs:
            raise PhloError(f"no run {run_id!r} in {self.path}", "list runs with `phlo-tui status`")
        return runs[0]

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Newest first, each with its steps."""
        return self._runs("order by started_at desc, id desc limit ?", (limit,))

    def _runs(self, where: str, args: tuple[Any, ...]) -> list[RunRecord]:
        con = self._connect()
        rows = con.execute(
            "select id, trigger, status, started_at, finished_at, error, hint, params, summary from runs "
            + where,
            args,
        ).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ",".join("?" * len(ids))
        steps: dict[str, list[StepRecord]] = {i: [] for i in ids}
        for s in con.execute(
            "select run_id, seq, name, status, started_at, finished_at, rows, error, detail from steps "
            f"where run_id in ({marks}) order by run_id, seq",
            ids,
        ):
            steps[s[0]].append(
                StepRecord(
                    run_id=s[0],
                    seq=s[1],
                    name=s[2],
                    status=StepStatus(s[3]),
                    started_at=datetime.fromisoformat(s[4]),
                    finished_at=_ts(s[5]),
                    rows=s[6],
                    error=s[7],
                    detail=json.loads(s[8]),
                )
            )
        return [
            RunRecord(
                id=r[0],
                trigger=RunTrigger(r[1]),
                status=RunStatus(r[2]),
                started_at=datetime.fromisoformat(r[3]),
                finished_at=_ts(r[4]),
                error=r[5],
                hint=r[6],
                params=json.loads(r[7]),
                summary=json.loads(r[8]),
                steps=tuple(steps[r[0]]),
            )
            for r in rows
        ]

    def fail_abandoned_runs(self) -> int:
        """Mark runs left `running` by a process that died as failed. Call only while holding the writer role."""
        with self._tx() as con:
            cur = con.execute(
                "update runs set status = ?, finished_at = ?, error = ? where status in (?, ?, ?)",
                (
                    RunStatus.FAILED.value,
                    _iso(database.utcnow()),
                    "the process running it stopped before it finished",
                    *(str(s) for s in RunStatus.ACTIVE),
                ),
            )
            con.execute(
                "update steps set status = ?, finished_at = ?, error = ? where status = ?",
                (StepStatus.FAILED.value, _iso(database.utcnow()), "interrupted", StepStatus.RUNNING.value),
            )
            return cur.rowcount

    # steps

    @contextmanager
    def step(self, run_id: str, name: str, detail: dict[str, Any] | None = None) -> Iterator[StepHandle]:
        """Record one pipeline step: start, end, rows and detail, and the error when it raises.

        Re-raises any exception as StepFailed(step, run_id) chained from the cause.
        """
        handle = StepHandle(detail=dict(detail or {}))
        started = database.utcnow()
        with self._tx() as con:
            seq = con.execute(
                "select coalesce(max(seq), 0) + 1 from steps where run_id = ?", (run_id,)
            ).fetchone()[0]
            con.execute(
                "insert into steps (run_id, seq, name, status, started_at, detail) values (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    name,
                    StepStatus.RUNNING.value,
                    _iso(started),
                    json.dumps(handle.detail, default=str),
                ),
            )
        log.info("step %s started", name)
        try:
            yield handle
        except BaseException as e:
            if isinstance(e, PhloError):
                message = str(e)
            else:
                frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
                where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
                message = f"{type(e).__name__}: {e}{where}"
            self._end_step(run_id, seq, StepStatus.FAILED, handle, message)
            log.info("step %s failed: %s", name, message)  # the run's failure is what gets reported
            if isinstance(e, (StepFailed, KeyboardInterrupt, SystemExit)):
                raise
            raise StepFailed(name, run_id, e) from e
        self._end_step(run_id, seq, StepStatus.SUCCEEDED, handle, None)
        log.info("step %s succeeded rows=%s", name, handle.rows)

    def _end_step(
        self, run_id: str, seq: int, status: StepStatus, handle: StepHandle, error: str | None
    ) -> None:
        with self._tx() as con:
            con.execute(
                "update steps set status = ?, finished_at = ?, rows = ?, error = ?, detail = ? "
                "where run_id = ? and seq = ?",
                (
                    status.value,
                    _iso(database.utcnow()),
                    handle.rows,
                    error,
                    json.dumps(handle.detail, default=str),
                    run_id,
                    seq,
                ),
            )

    # quality

    def record_checks(self, records: list[CheckRecord]) -> None:
        with self._tx() as con:
            con.executemany(
                "insert into quality_results (run_id, check_name, table_name, column_name, severity, "
                "failing_count, samples) values (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.run_id,
                        r.check,
                        r.table,
                        r.column,
                        r.severity,
                        r.failing_count,
                        json.dumps(list(r.samples[:20]), default=str),
                    )
                    for r in records
                ],
            )

    def checks(self, run_id: str | None = None, limit_runs: int = 20) -> list[CheckRecord]:
        """Quality results of one run, or of the newest `limit_runs` runs, newest run first."""
        con = self._connect()
        args: tuple[object, ...]
        if run_id is not None:
            where, args = "where q.run_id = ?", (run_id,)
        else:
            where = "where q.run_id in (select id from runs order by started_at desc limit ?)"
            args = (limit_runs,)
        rows = con.execute(
            "select q.run_id, check_name, table_name, column_name, severity, failing_count, samples "
            f"from quality_results q join runs r on r.id = q.run_id {where} "
            "order by r.started_at desc, q.rowid",
            args,
        ).fetchall()
        return [
            CheckRecord(r[0], r[1], r[2], r[3], Severity(r[4]), r[5], tuple(json.loads(r[6]))) for r in rows
        ]

    def standing_gate_errors(self) -> list[str]:
        """The error checks that failed the gate of the newest run that evaluated one, when it failed.

        Those the held run recorded as blocking: the run's other error checks, such as validation's,
        quarantined their rows and held nothing. A run recorded before `blocking` existed falls
        back to all its error checks.
        """
        row = (
            self._connect()
            .execute(
                "select id, json_extract(summary, '$.gate'), json_extract(summary, '$.blocking') from runs "
                "where json_extract(summary, '$.gate') is not null order by started_at desc, id desc limit 1"
            )
            .fetchone()
        )
        if row is None or row[1] != "failed":
            return []
        if row[2] is not None:
            return [str(b) for b in json.loads(row[2])]
        return [
            blocking_text(c.table, c.check, c.column, c.failing_count)
            for c in self.checks(row[0])
            if c.severity is Severity.ERROR
        ]
