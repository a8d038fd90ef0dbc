"""The weekly lake maintenance job: expire old snapshots, compact small files, delete orphan files."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.lake.store import Lake
from engine.runs.records import PromotionState
from engine.runs.store import RunStore

log = logging.getLogger(__name__)

MAINTENANCE_PROPERTY = "phlo.maintenance"
"""Snapshot summary property that marks the commits of this job (value: `compaction`)."""


@dataclass(frozen=True)
class TableMaintenance:
    """What maintenance did to one lake table.

    `files_*` and `bytes_*` count the Iceberg files on disk under the table's data/ and metadata/
    folders; `dev_files_*` the data files of dev's head. `main_moved_to` is set when main pointed
    at dev's head before compaction and was fast-forwarded to the compacted snapshot (same rows).
    """

    table: str
    snapshots_before: int
    snapshots_expired: int
    snapshots_after: int
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    dev_files_before: int
    dev_files_after: int
    files_compacted: int
    partitions_compacted: tuple[str, ...]
    compacted_snapshot: int | None
    main_moved_from: int | None
    main_moved_to: int | None
    orphans_deleted: int
    bytes_freed: int
    seconds: float


@dataclass(frozen=True)
class MaintenanceResult:
    """One run of the maintenance job, table by table."""

    tables: tuple[TableMaintenance, ...]
    seconds: float

    @property
    def files_deleted(self) -> int:
        return sum(t.orphans_deleted for t in self.tables)

    @property
    def bytes_freed(self) -> int:
        return sum(t.bytes_freed for t in self.tables)

    @property
    def main_moves(self) -> dict[str, dict[str, int | None]]:
        """Tables whose main was fast-forwarded to its compacted snapshot, as a promotion records them."""
        return {
            t.table: {"from": t.main_moved_from, "to": t.main_moved_to}
            for t in self.tables
            if t.main_moved_to is not None
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "files_deleted": self.files_deleted,
            "bytes_freed": self.bytes_freed,
            "tables": [
                {
                    **asdict(t),
                    "partitions_compacted": list(t.partitions_compacted),
                    "seconds": round(t.seconds, 3),
                }
                for t in self.tables
            ],
        }


def run_maintenance(
    lake: Lake,
    tables: Sequence[str],
    *,
    protected_snapshots: set[int],
    keep_days: float = 7,
    orphan_min_age_s: float = 3600,
    now: datetime | None = None,
    fast_forward_main: bool = False,
) -> MaintenanceResult:
    """Expire, compact and sweep each of `tables` that exists, in that order, table by table.

    1. Snapshots older than `keep_days` go, except branch heads, dev's unpromoted chain down to
       main, and `protected_snapshots` (the snapshots promotions recorded, see snapshots_in_use).
    2. Each partition of dev's head with several data files is rewritten into one file, with the
       same rows (checked by count and checksum before the commit); main keeps its files until the
       next promotion. With `fast_forward_main`, main moves along in the same commit when it pointed
       at dev's head (so no unreviewed row reaches it); the caller must then record
       `MaintenanceResult.main_moves` as a promotion, or readers pinned to the last promotion keep
       reading a snapshot that is no longer a head, which only `protected_snapshots` keeps alive.
    3. Files no remaining snapshot refers to and older than `orphan_min_age_s` are deleted.

    Expiry runs before compaction, so the snapshot dev had when the job started keeps its files
    until a later run finds it older than `keep_days`: a reader still on it is never broken.
    Call it only from the process holding the writer lease, with no write in flight.
    Raises LakeError when a table cannot be read or written, or compaction would change rows: the
    tables before it keep their maintenance, and each step of the failing one either committed
    whole or changed nothing (a compaction's uncommitted files are swept by a later run).
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    expire_before = now - timedelta(days=keep_days)
    orphans_before = now - timedelta(seconds=orphan_min_age_s)
    done = []
    for name in tables:
        if not lake.table_exists(name):
            continue
        table_started = time.perf_counter()
        files_before, bytes_before = lake.stored_files(name)
        snapshots_before = len(lake.snapshots(name))
        main_before = lake.snapshot_id(name, "main")
        expired = lake.expire_unprotected_snapshots(
            name, older_than=expire_before, protect=protected_snapshots
        )
        compaction = lake.compact(
            name,
            branch="dev",
            fast_forward="main" if fast_forward_main else None,
            snapshot_properties={MAINTENANCE_PROPERTY: "compaction"},
        )
        sweep = lake.delete_orphan_files(name, older_than=orphans_before)
        files_after, bytes_after = lake.stored_files(name)
        moved = compaction.fast_forwarded is not None
        record = TableMaintenance(
            table=name,
            snapshots_before=snapshots_before,
            snapshots_expired=expired,
            snapshots_after=len(lake.snapshots(name)),
            files_before=files_before,
            files_after=files_after,
            bytes_before=bytes_before,
            bytes_after=bytes_after,
            dev_files_before=compaction.files_before,
            dev_files_after=compaction.files_after,
            files_compacted=compaction.files_rewritten,
            partitions_compacted=compaction.partitions,
            compacted_snapshot=compaction.snapshot_id,
            main_moved_from=main_before if moved else None,
            main_moved_to=compaction.snapshot_id if moved else None,
            orphans_deleted=sweep.files_deleted,
            bytes_freed=sweep.bytes_freed,
            seconds=time.perf_counter() - table_started,
        )
        log.info(
            "maintenance of %s: %d snapshots expired, %d files compacted into %d, %d orphans deleted "
            "(%d bytes)%s",
            name,
            expired,
            compaction.files_rewritten,
            compaction.files_rewritten - compaction.files_before + compaction.files_after,
            sweep.files_deleted,
            sweep.bytes_freed,
            ", main fast-forwarded" if moved else "",
        )
        done.append(record)
    return MaintenanceResult(tuple(done), time.perf_counter() - started)


def snapshots_in_use(store: RunStore, *, since: datetime) -> set[int]:
    """The snapshots readers may be pointed at by the run store, for `protected_snapshots`.

    The `from` and `to` of the newest finished promotion (what readers of main see), of every
    unfinished one (a crash mid-way: readers see its `from`, recovery moves main to its `to`), and
    of every promotion created since `since` (a reader may still hold one). Older promotions are
    left out on purpose: protecting every promotion ever made would keep one snapshot per promotion
    and its files for good, and pyiceberg slows each commit with every snapshot kept.
    """
    records = store.promotions(limit=1_000_000)
    chosen = [r for r in records if r.state is PromotionState.PENDING or r.created_at >= since]
    last = store.last_promotion()
    if last is not None:
        chosen.append(last)
    return {
        snapshot
        for record in chosen
        for entry in record.tables.values()
        for snapshot in (entry.get("from"), entry.get("to"))
        if snapshot is not None
    }
