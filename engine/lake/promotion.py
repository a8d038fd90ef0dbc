"""Write-audit-publish: move `main` of every lake table to its gated `dev` snapshot, all or nothing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from engine.errors import PromotionError
from engine.lake.store import Lake
from engine.runs.records import PromotionRecord, PromotionState
from engine.runs.store import RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableMove:
    """`main` of `table` goes from `main_snapshot` to `dev_snapshot`; `ahead` snapshots in between."""

    table: str
    main_snapshot: int | None
    dev_snapshot: int | None
    ahead: int

    @property
    def changes(self) -> bool:
        return self.dev_snapshot is not None and self.dev_snapshot != self.main_snapshot


def plan_moves(lake: Lake, tables: Sequence[str]) -> list[TableMove]:
    """What a promotion would do, table by table.

    Raises PromotionError when `main` of a table is not an ancestor of its `dev` (the branches have
    diverged): a fast-forward is the only move allowed, since pyiceberg would silently drop main's
    commits otherwise.
    """
    moves = []
    for table in tables:
        main = lake.snapshot_id(table, "main")
        dev = lake.snapshot_id(table, "dev")
        if dev is None or dev == main:
            moves.append(TableMove(table, main, dev, 0))
            continue
        lineage = [s.snapshot_id for s in lake.history(table, "dev")]
        if main is not None and main not in lineage:
            raise PromotionError(
                f"cannot promote {table}: main (snapshot {main}) is not an ancestor of dev (snapshot {dev})",
                "the branches have diverged; rebuild dev from main with `phlo-tui run --full-refresh`",
            )
        ahead = lineage.index(main) if main is not None else len(lineage)
        moves.append(TableMove(table, main, dev, ahead))
    return moves


def promote(lake: Lake, store: RunStore, run_id: str | None, tables: Sequence[str]) -> PromotionRecord | None:
    """Fast-forward `main` of every table in one recorded promotion; None when nothing differs.

    The record is written before any ref moves, so an interruption is finished by `recover`.
    Raises PromotionError for diverged branches (nothing is moved then).
    """
    with lake.pinned():
        return _promote(lake, store, run_id, tables)


def _promote(
    lake: Lake, store: RunStore, run_id: str | None, tables: Sequence[str]
) -> PromotionRecord | None:
    moves = [m for m in plan_moves(lake, tables) if m.changes]
    if not moves:
        return None
    tables_json: dict[str, dict[str, int | None]] = {}
    last = store.last_promotion()
    # The record lists every table, moved or not, so that readers of main can take one record as truth.
    for table in tables:
        tables_json[table] = {"from": lake.snapshot_id(table, "main"), "to": lake.snapshot_id(table, "main")}
    if last is not None:
        for table, entry in last.tables.items():
            tables_json.setdefault(table, entry)
    for move in moves:
        tables_json[move.table] = {"from": move.main_snapshot, "to": move.dev_snapshot}
    promotion_id = store.begin_promotion(run_id, tables_json)
    _apply(lake, promotion_id, tables_json)
    store.end_promotion(promotion_id, PromotionState.DONE)
    return store.promotions(limit=1)[0]


def _apply(lake: Lake, promotion_id: int, tables: dict[str, dict[str, int | None]]) -> None:
    # One table after the other: moving refs from threads was slower (the catalog's SQLite
    # serialises the commits and its busy handler sleeps).
    for table, entry in tables.items():
        target = entry["to"]
        if target is None or lake.snapshot_id(table, "main") == target:
            continue
        lake.set_branch(table, "main", target)
        log.info("promotion %s: %s main -> %s", promotion_id, table, target)


def recover(lake: Lake, store: RunStore) -> PromotionRecord | None:
    """Finish a promotion that a crash interrupted. Call once at start, holding the writer lock.

    Moving a ref is idempotent, so the interrupted promotion is completed rather than undone: its
    `dev` snapshots had passed the gates. Returns the promotion it finished, if any.
    """
    pending = store.promotions(PromotionState.PENDING, limit=10)
    for record in reversed(pending):
        log.warning("finishing promotion %s interrupted by a crash", record.id)
        _apply(lake, record.id, record.tables)
        store.end_promotion(record.id, PromotionState.DONE)
    return pending[0] if pending else None
