"""The run store: runs, steps, quality results and watermarks in SQLite (WAL), shared by every process."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.errors import LeaseHeldError, PhloError, RunStoreError, StepFailed
from engine.runs.records import (
    CheckRecord,
    CommandKind,
    CommandRecord,
    CommandStatus,
    LeaseRecord,
    PromotionRecord,
    PromotionState,
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by time, unique across processes: 20261125T201530Z-3fa9c1."""
    return f"{(now or utcnow()).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


_SCHEMA = [
    """
    create table runs (
        id text primary key,
        trigger text not null,
        status text not null,
        started_at text not null,
        finished_at text,
        error text,
        hint text,
        params text not null default '{}',
        summary text not null default '{}'
    );
    create index runs_started on runs(started_at);
    create table steps (
        run_id text not null references runs(id),
        seq integer not null,
        name text not null,
        status text not null,
        started_at text not null,
        finished_at text,
        rows integer,
        error text,
        detail text not null default '{}',
        primary key (run_id, seq)
    );
    create table quality_results (
        run_id text not null references runs(id),
        check_name text not null,
        table_name text not null,
        column_name text,
        severity text not null,
        failing_count integer not null,
        samples text not null default '[]'
    );
    create index quality_run on quality_results(run_id);
    create table watermarks (
        source text primary key,
        value integer not null,
        run_id text,
        updated_at text not null
    );
    """,
    """
    create table promotions (
        id integer primary key autoincrement,
        run_id text,
        state text not null,
        created_at text not null,
        finished_at text,
        tables text not null
    );
    create table pending_months (
        month text primary key,
        run_id text not null,
        added_at text not null
    );
    """,
    """
    create table lease (
        id integer primary key check (id = 1),
        role text not null,
        pid integer not null,
        host text not null,
        acquired_at text not null,
        heartbeat_at text not null,
        next_run_at text
    );
    create table commands (
        id integer primary key autoincrement,
        kind text not null,
        args text not null default '{}',
        status text not null,
        created_at text not null,
        started_at text,
        finished_at text,
        run_id text,
        exit_code integer,
        result text
    );
    create index commands_status on commands(status);
    """,
    """
    create table snapshot_files (
        table_name text not null,
        snapshot_id integer not null,
        columns text not null,
        files text not null,
        recorded_at text not null,
        primary key (table_name, snapshot_id)
    );
    """,
]


def blocking_text(table: str, check: str, column: str | None, failing: int) -> str:
    """How a check that holds promotion is named to the user: `table: check on column (n failing)`."""
    return f"{table}: {check}" + (f" on {column}" if column else "") + f" ({failing} failing)"


def query_only(path: Path, *, timeout: float) -> sqlite3.Connection:
    """A connection to an existing SQLite database that refuses every write, for a reader.

    Not mode=ro: a read-only connection to a WAL database creates its -wal and -shm files and cannot
    remove them when it closes, so every read would leave them in the home. mode=rw (never creates the
    database; SQLite falls back to reading a file it cannot write) with query_only removes them on
    close as a writer's last connection does; WAL still lets it read while a writer commits.
    """
    con = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=rw",
        uri=True,
        timeout=timeout,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        con.execute("pragma query_only = on")
        con.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error:
        con.close()
        if os.access(path.parent, os.W_OK):
            raise
        # A read-only home (a read-only mount, a backup): WAL needs its -shm file, which cannot be made
        # there. Nothing can write such a home either, so the file is read as it is, without locks.
        con = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=ro&immutable=1",
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    return con


class RunStore:
    """Run records in `runs.sqlite`. Safe for several processes (WAL) and threads (a connection each)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Open (creating and migrating) the store; with `read_only`, open an existing one as it is, for
        a reader that must not wait for a writer (RunStoreError when it is missing or older)."""
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        if read_only:
            version = self._connect().execute("pragma user_version").fetchone()[0]
            if version != len(_SCHEMA):
                self.close()
                raise RunStoreError(
                    f"the run store {path} is at version {version}, not {len(_SCHEMA)}",
                    "start the engine once: it migrates the store",
                )
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database's mode.
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as e:
            raise RunStoreError(
                f"cannot open the run store {path}: {e.strerror}",
                f"check free disk space and that {path.parent} is writable",
            ) from e
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            try:
                if self.read_only:
                    con = query_only(self.path, timeout=30)
                    self._local.con = con
                    return con
                con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                con.execute("pragma journal_mode=wal")
                con.execute("pragma synchronous=normal")
                con.execute("pragma busy_timeout=30000")
                con.execute("pragma foreign_keys=on")
            except sqlite3.Error as e:
                raise self._failure("open", e) from e
            self._local.con = con
        return con

    def _failure(self, action: str, error: sqlite3.Error) -> RunStoreError:
        return RunStoreError(
            f"cannot {action} the run store {self.path}: {error}",
            f"check free disk space and that {self.path.parent} is writable",
        )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite's failures (a full disk, a read-only home) become RunStoreError."""
        con = self._connect()
        try:
            con.execute("begin immediate")
            try:
                yield con
            except BaseException:
                with suppress(sqlite3.Error):
                    con.execute("rollback")
                raise
            con.execute("commit")
        except sqlite3.Error as e:
            if con.in_transaction:
                with suppress(sqlite3.Error):
                    con.execute("rollback")
            raise self._failure("write", e) from e

    def _migrate(self) -> None:
        with self._tx() as con:
            version = con.execute("pragma user_version").fetchone()[0]
            for number, script in enumerate(_SCHEMA[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        con.execute(statement)
                con.execute(f"pragma user_version = {number}")
        self.path.chmod(0o600)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # runs

    def create_run(self, trigger: RunTrigger, params: dict[str, Any] | None = None) -> RunRecord:
        run = RunRecord(
            id=new_run_id(),
            trigger=trigger,
            status=RunStatus.RUNNING,
            started_at=utcnow(),
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
                    _iso(utcnow()),
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
                    _iso(utcnow()),
                    "the process running it stopped before it finished",
                    *(str(s) for s in RunStatus.ACTIVE),
                ),
            )
            con.execute(
                "update steps set status = ?, finished_at = ?, error = ? where status = ?",
                (StepStatus.FAILED.value, _iso(utcnow()), "interrupted", StepStatus.RUNNING.value),
            )
            return cur.rowcount

    # steps

    @contextmanager
    def step(self, run_id: str, name: str, detail: dict[str, Any] | None = None) -> Iterator[StepHandle]:
        """Record one pipeline step: start, end, rows and detail, and the error when it raises.

        Re-raises any exception as StepFailed(step, run_id) chained from the cause.
        """
        handle = StepHandle(detail=dict(detail or {}))
        started = utcnow()
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
                    _iso(utcnow()),
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

    # watermarks

    def watermark(self, source: str) -> int | None:
        row = self._connect().execute("select value from watermarks where source = ?", (source,)).fetchone()
        return None if row is None else int(row[0])

    def advance_watermark(self, source: str, value: int, run_id: str) -> None:
        """Move the watermark forward only: a backfill of old history never moves it back."""
        with self._tx() as con:
            con.execute(
                "insert into watermarks (source, value, run_id, updated_at) values (?, ?, ?, ?) "
                "on conflict(source) do update set value = excluded.value, run_id = excluded.run_id, "
                "updated_at = excluded.updated_at where excluded.value > watermarks.value",
                (source, value, run_id, _iso(utcnow())),
            )

    # promotions: one record per promotion, so readers of main see one consistent set of tables

    def begin_promotion(self, run_id: str | None, tables: dict[str, dict[str, int | None]]) -> int:
        """Record a promotion about to move `main` of each table (`{"from": id, "to": id}`)."""
        with self._tx() as con:
            cur = con.execute(
                "insert into promotions (run_id, state, created_at, tables) values (?, ?, ?, ?)",
                (run_id, PromotionState.PENDING.value, _iso(utcnow()), json.dumps(tables)),
            )
            return int(cur.lastrowid or 0)

    def end_promotion(self, promotion_id: int, state: PromotionState) -> None:
        with self._tx() as con:
            con.execute(
                "update promotions set state = ?, finished_at = ? where id = ?",
                (state.value, _iso(utcnow()), promotion_id),
            )

    def promotions(self, state: PromotionState | None = None, limit: int = 20) -> list[PromotionRecord]:
        """Promotions newest first, optionally only those in `state`."""
        where, args = ("where state = ?", (state.value, limit)) if state else ("", (limit,))
        rows = self._connect().execute(
            f"select id, run_id, state, created_at, finished_at, tables from promotions {where} "
            "order by id desc limit ?",
            args,
        )
        return [
            PromotionRecord(
                r[0], r[1], PromotionState(r[2]), datetime.fromisoformat(r[3]), _ts(r[4]), json.loads(r[5])
            )
            for r in rows
        ]

    def last_promotion(self) -> PromotionRecord | None:
        done = self.promotions(PromotionState.DONE, limit=1)
        return done[0] if done else None

    def main_snapshots(self) -> dict[str, int | None]:
        """The snapshot of each table that readers of main see: the last finished promotion's; while a
        promotion is unfinished (a crash mid-way), the snapshots it started from."""
        done = self.last_promotion()
        pending = self.promotions(PromotionState.PENDING, limit=1)
        chosen: dict[str, int | None] = {}
        if done is not None:
            chosen.update({t: e.get("to") for t, e in done.tables.items()})
        if pending and (done is None or pending[0].id > done.id):
            chosen.update({t: e.get("from") for t, e in pending[0].tables.items()})
        return chosen

    # the data files of a few snapshots, so that the dashboard can read them before pyiceberg is imported

    def record_snapshot_files(
        self, table: str, snapshot_id: int, columns: list[tuple[str, str]], files: list[str]
    ) -> None:
        """Record the `files` and `columns` (name, DuckDB type) of one snapshot of lake table `table`."""
        with self._tx() as con:
            con.execute(
                "insert or replace into snapshot_files (table_name, snapshot_id, columns, files, recorded_at) "
                "values (?, ?, ?, ?, ?)",
                (table, snapshot_id, json.dumps(columns), json.dumps(files), _iso(utcnow())),
            )

    def snapshot_files(self, table: str, snapshot_id: int) -> tuple[list[tuple[str, str]], list[str]] | None:
        """The recorded (columns, files) of one snapshot, or None when it was not recorded."""
        row = (
            self._connect()
            .execute(
                "select columns, files from snapshot_files where table_name = ? and snapshot_id = ?",
                (table, snapshot_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        return [(str(n), str(k)) for n, k in json.loads(row[0])], [str(f) for f in json.loads(row[1])]

    def recorded_snapshots(self, table: str) -> set[int]:
        rows = self._connect().execute(
            "select snapshot_id from snapshot_files where table_name = ?", (table,)
        )
        return {int(r[0]) for r in rows}

    def forget_snapshot_files(self, table: str, keep: set[int]) -> None:
        """Drop the records of `table`'s snapshots other than `keep`: no reader is sent to them any more."""
        stale = self.recorded_snapshots(table) - keep
        if not stale:
            return
        with self._tx() as con:
            con.executemany(
                "delete from snapshot_files where table_name = ? and snapshot_id = ?",
                [(table, snapshot_id) for snapshot_id in sorted(stale)],
            )

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

    # local months whose layers must be rebuilt; kept until a layer build commits them

    def add_pending_months(self, months: set[str], run_id: str) -> None:
        with self._tx() as con:
            con.executemany(
                "insert or ignore into pending_months (month, run_id, added_at) values (?, ?, ?)",
                [(m, run_id, _iso(utcnow())) for m in sorted(months)],
            )

    def pending_months(self) -> set[str]:
        return {r[0] for r in self._connect().execute("select month from pending_months")}

    def clear_pending_months(self, months: set[str]) -> None:
        with self._tx() as con:
            con.executemany("delete from pending_months where month = ?", [(m,) for m in months])

    # the writer lease: who writes this home, and whether it is alive

    def lease(self) -> LeaseRecord | None:
        row = (
            self._connect()
            .execute("select role, pid, host, acquired_at, heartbeat_at, next_run_at from lease where id = 1")
            .fetchone()
        )
        if row is None:
            return None
        return LeaseRecord(
            row[0],
            row[1],
            row[2],
            datetime.fromisoformat(row[3]),
            datetime.fromisoformat(row[4]),
            _ts(row[5]),
        )

    def take_lease(
        self, role: str, pid: int, host: str, *, stale_after: timedelta, holder_alive: bool
    ) -> LeaseRecord:
        """Take the lease, or raise LeaseHeldError naming the live holder.

        A lease is taken over when its holder's heartbeat is older than `stale_after`, or at once
        when the caller knows the holder is dead (`holder_alive` False: its pid is gone on this host).
        """
        now = utcnow()
        with self._tx() as con:
            row = con.execute("select role, pid, host, heartbeat_at from lease where id = 1").fetchone()
            if row is not None and not (row[1] == pid and row[2] == host):
                fresh = now - datetime.fromisoformat(row[3]) < stale_after
                if fresh and holder_alive:
                    raise LeaseHeldError(
                        f"{self.path.parent} is being written by a {row[0]} (pid {row[1]} on {row[2]}, "
                        f"heartbeat {row[3][:19]})",
                        "stop it first, or use the running daemon: commands are queued to it",
                    )
            con.execute(
                "insert into lease (id, role, pid, host, acquired_at, heartbeat_at) values (1, ?, ?, ?, ?, ?) "
                "on conflict(id) do update set role = excluded.role, pid = excluded.pid, host = excluded.host, "
                "acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at, next_run_at = null",
                (role, pid, host, _iso(now), _iso(now)),
            )
        lease = self.lease()
        assert lease is not None
        return lease

    def heartbeat(self, pid: int, host: str, next_run_at: datetime | None = None) -> bool:
        """Refresh the lease; False when another process has taken it over (then stop writing)."""
        with self._tx() as con:
            cur = con.execute(
                "update lease set heartbeat_at = ?, next_run_at = coalesce(?, next_run_at) "
                "where id = 1 and pid = ? and host = ?",
                (_iso(utcnow()), _iso(next_run_at), pid, host),
            )
            return cur.rowcount == 1

    def release_lease(self, pid: int, host: str) -> None:
        with self._tx() as con:
            con.execute("delete from lease where id = 1 and pid = ? and host = ?", (pid, host))

    # the command queue: what other processes ask the daemon to do

    def enqueue(self, kind: CommandKind, args: dict[str, Any]) -> int:
        with self._tx() as con:
            cur = con.execute(
                "insert into commands (kind, args, status, created_at) values (?, ?, ?, ?)",
                (kind, json.dumps(args), CommandStatus.QUEUED.value, _iso(utcnow())),
            )
            return int(cur.lastrowid or 0)

    def claim_command(self) -> CommandRecord | None:
        """The oldest queued command, marked running; None when the queue is empty."""
        with self._tx() as con:
            row = con.execute(
                "select id from commands where status = ? order by id limit 1", (CommandStatus.QUEUED.value,)
            ).fetchone()
            if row is None:
                return None
            con.execute(
                "update commands set status = ?, started_at = ? where id = ?",
                (CommandStatus.RUNNING.value, _iso(utcnow()), row[0]),
            )
        return self.command(row[0])

    def finish_command(
        self,
        command_id: int,
        status: CommandStatus,
        *,
        exit_code: int,
        run_id: str | None,
        result: dict[str, Any],
    ) -> None:
        with self._tx() as con:
            con.execute(
                "update commands set status = ?, finished_at = ?, exit_code = ?, run_id = ?, result = ? "
                "where id = ?",
                (
                    status.value,
                    _iso(utcnow()),
                    exit_code,
                    run_id,
                    json.dumps(result, default=str),
                    command_id,
                ),
            )

    def command(self, command_id: int) -> CommandRecord:
        row = (
            self._connect()
            .execute(
                "select id, kind, args, status, created_at, run_id, exit_code, result from commands where id = ?",
                (command_id,),
            )
            .fetchone()
        )
        if row is None:
            raise PhloError(f"no command {command_id} in {self.path}")
        return CommandRecord(
            id=row[0],
            kind=CommandKind.read(row[1]),
            args=json.loads(row[2]),
            status=CommandStatus(row[3]),
            created_at=datetime.fromisoformat(row[4]),
            run_id=row[5],
            exit_code=row[6],
            result=json.loads(row[7]) if row[7] else None,
        )

    def abandon_commands(self) -> int:
        """Commands a dead daemon had started are failed; queued ones stay for the next daemon."""
        with self._tx() as con:
            cur = con.execute(
                "update commands set status = ?, finished_at = ?, exit_code = 1, result = ? where status = ?",
                (
                    CommandStatus.FAILED.value,
                    _iso(utcnow()),
                    json.dumps({"error": "the daemon stopped before it finished"}),
                    CommandStatus.RUNNING.value,
                ),
            )
            return cur.rowcount
