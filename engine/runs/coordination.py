"""How processes share a home through the run store: the writer lease and the command queue."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from engine.errors import LeaseHeldError, PhloError
from engine.runs import database
from engine.runs.database import RunDatabase
from engine.runs.records import (
    CommandKind,
    CommandRecord,
    CommandStatus,
    LeaseRecord,
    _iso,
    _ts,
)

log = logging.getLogger(__name__)


class HomeCoordination(RunDatabase):
    """Who writes this home, whether it is alive, and what other processes ask it to do."""

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
        now = database.utcnow()
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
                (_iso(database.utcnow()), _iso(next_run_at), pid, host),
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
                (kind, json.dumps(args), CommandStatus.QUEUED.value, _iso(database.utcnow())),
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
                (CommandStatus.RUNNING.value, _iso(database.utcnow()), row[0]),
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
                    _iso(database.utcnow()),
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
                    _iso(database.utcnow()),
                    json.dumps({"error": "the daemon stopped before it finished"}),
                    CommandStatus.RUNNING.value,
                ),
            )
            return cur.rowcount
