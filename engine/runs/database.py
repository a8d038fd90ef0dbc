"""The run store's SQLite database: its schema and migrations, a connection per thread (WAL), and
write transactions whose failures become RunStoreError. The base of `RunStore` (engine/runs/store.py)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import RunStoreError

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class RunDatabase:
    """`runs.sqlite`, opened (created and migrated) once per process; safe for several processes (WAL)
    and threads (a connection each)."""

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
