"""Expiring lake history and the weekly maintenance, at the start of a run (engine.pipeline)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from engine.clock import wall_clock
from engine.lake.maintenance import run_maintenance, snapshots_in_use

if TYPE_CHECKING:
    from engine.pipeline import Pipeline

HOUR_MS = 3_600_000
EXPIRY_SOURCE = "maintenance:expire-history"
EXPIRY_EVERY_MS = 6 * HOUR_MS
MAINTENANCE_SOURCE = "maintenance:weekly"
MAINTENANCE_EVERY_MS = 7 * 24 * HOUR_MS


def expire_history(pipeline: Pipeline, run_id: str) -> None:
    """Every few hours, drop lake history older than the retention and the files only it used;
    once a week, also compact partitions of many small files (`engine.lake.maintenance`).

    pyiceberg slows every commit by about 1 ms per snapshot a table keeps, and each merge leaves
    its old partition files behind, so history cannot grow without bound. Runs before ingest,
    when no write of this process is in flight; branch heads, dev's unpromoted work and the
    snapshots readers of main may be using (recent promotions) stay.
    """
    # Process time: Iceberg stamps snapshots, and the run store promotions, with the wall clock.
    now = wall_clock()
    now_ms = int(now.timestamp() * 1000)
    last = pipeline.store.watermark(EXPIRY_SOURCE)
    if last is None:
        # A new home has no history to expire yet; start the clocks.
        pipeline.store.advance_watermark(EXPIRY_SOURCE, now_ms, run_id)
        pipeline.store.advance_watermark(MAINTENANCE_SOURCE, now_ms, run_id)
        return
    if now_ms - last < EXPIRY_EVERY_MS:
        return
    retention = timedelta(hours=pipeline.settings.snapshot_retention_hours)
    cutoff = now - retention
    protect = snapshots_in_use(pipeline.store, since=cutoff)
    weekly = now_ms - (pipeline.store.watermark(MAINTENANCE_SOURCE) or 0) >= MAINTENANCE_EVERY_MS
    tables = [t for t in pipeline.tables if pipeline.lake.table_exists(t)]
    if weekly:
        with pipeline.store.step(run_id, "maintenance") as step:
            result = run_maintenance(
                pipeline.lake,
                tables,
                protected_snapshots=protect,
                keep_days=retention.total_seconds() / 86400,
                now=now,
            )
            step.rows = result.files_deleted
            step.detail.update(result.to_json())
        pipeline.store.advance_watermark(MAINTENANCE_SOURCE, now_ms, run_id)
    else:
        with pipeline.store.step(run_id, "expire history") as step:
            expired = deleted = freed = 0
            for name in tables:
                expired += pipeline.lake.expire_unprotected_snapshots(
                    name, older_than=cutoff, protect=protect
                )
                sweep = pipeline.lake.delete_orphan_files(name, older_than=cutoff)
                deleted += sweep.files_deleted
                freed += sweep.bytes_freed
            step.rows = expired
            step.detail.update(files_deleted=deleted, bytes_freed=freed, cutoff=cutoff.isoformat())
    pipeline.store.advance_watermark(EXPIRY_SOURCE, now_ms, run_id)
