"""What the run store keeps for the lake: watermarks and sync positions, promotions, the data files of
recent snapshots, and the months whose layers must be rebuilt."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from engine.runs import database
from engine.runs.database import RunDatabase
from engine.runs.records import (
    PromotionRecord,
    PromotionState,
    _iso,
    _ts,
)

log = logging.getLogger(__name__)


class LakeBookkeeping(RunDatabase):
    """The lake's records in the run store."""

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
                (source, value, run_id, _iso(database.utcnow())),
            )

    # promotions: one record per promotion, so readers of main see one consistent set of tables

    def begin_promotion(self, run_id: str | None, tables: dict[str, dict[str, int | None]]) -> int:
        """Record a promotion about to move `main` of each table (`{"from": id, "to": id}`)."""
        with self._tx() as con:
            cur = con.execute(
                "insert into promotions (run_id, state, created_at, tables) values (?, ?, ?, ?)",
                (run_id, PromotionState.PENDING.value, _iso(database.utcnow()), json.dumps(tables)),
            )
            return int(cur.lastrowid or 0)

    def end_promotion(self, promotion_id: int, state: PromotionState) -> None:
        with self._tx() as con:
            con.execute(
                "update promotions set state = ?, finished_at = ? where id = ?",
                (state.value, _iso(database.utcnow()), promotion_id),
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
                (table, snapshot_id, json.dumps(columns), json.dumps(files), _iso(database.utcnow())),
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

    # local months whose layers must be rebuilt; kept until a layer build commits them

    def add_pending_months(self, months: set[str], run_id: str) -> None:
        with self._tx() as con:
            con.executemany(
                "insert or ignore into pending_months (month, run_id, added_at) values (?, ?, ?)",
                [(m, run_id, _iso(database.utcnow())) for m in sorted(months)],
            )

    def pending_months(self) -> set[str]:
        return {r[0] for r in self._connect().execute("select month from pending_months")}

    def clear_pending_months(self, months: set[str]) -> None:
        with self._tx() as con:
            con.executemany("delete from pending_months where month = ?", [(m,) for m in months])
