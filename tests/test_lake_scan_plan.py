"""Unfiltered scans planned straight from the cached manifest lists and entries
(engine.lake.manifest_cache.live_data_files): for every snapshot of a table with overwrites, deletes
and several partitions, the same files in the same order as pyiceberg's DataScan.plan_files, and the
same files per partition as its plan with a partition filter."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from pyiceberg.expressions import EqualTo
from pyiceberg.table import DataScan

from engine.lake import manifest_cache
from engine.lake.files import _local_path, _partition_files, _planned, _planned_files
from engine.lake.store import Lake

MONTHS = ["2025-01", "2025-02", "2025-03"]
SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("month", pa.string())])


def _history(tmp_path: Path) -> Lake:
    """A model table through write_model's overwrites on dev, then pyiceberg's own delete, dynamic
    partition overwrite and append on main: copy-on-write deletes leave DELETED entries behind."""
    lake = Lake(tmp_path / "lake")
    lake.write_model("silver.t", pa.table({"id": [1, 2, 3], "month": MONTHS}), partition_by="month")
    for value in range(4, 8):
        month = MONTHS[value % 3]
        lake.write_model(
            "silver.t", pa.table({"id": [value], "month": [month]}), partition_by="month", partitions={month}
        )
    lake.write_model(
        "silver.t",
        pa.table({"id": [], "month": []}, schema=SCHEMA),
        partition_by="month",
        partitions={"2025-03"},
    )
    table = lake._load("silver.t")
    table.append(pa.table({"id": [8, 9], "month": ["2025-02", "2025-04"]}, schema=SCHEMA))
    table.delete(EqualTo("month", "2025-04"))
    table.dynamic_partition_overwrite(pa.table({"id": [10], "month": ["2025-02"]}, schema=SCHEMA))
    table.append(pa.table({"id": [11], "month": ["2025-01"]}, schema=SCHEMA))
    return lake


def _pyiceberg(table, snapshot_id: int, row_filter=None) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    scan = DataScan(table_metadata=table.metadata, io=table.io, snapshot_id=snapshot_id)
    if row_filter is not None:
        scan = scan.filter(row_filter)
    return [(task.file.file_path, task.file.record_count) for task in scan.plan_files()]


def test_direct_plans_equal_pyiceberg_on_every_snapshot(tmp_path: Path) -> None:
    lake = _history(tmp_path)
    table = lake._load("silver.t")
    snapshots = table.metadata.snapshots
    assert len(snapshots) >= 10
    summaries = {s.summary.operation.value for s in snapshots if s.summary is not None}
    assert {"append", "overwrite", "delete"} <= summaries
    for snapshot in snapshots:
        live = manifest_cache.live_data_files(table.metadata, table.io, snapshot.snapshot_id)
        assert live is not None
        assert [(f.file_path, f.record_count) for f in live] == _pyiceberg(table, snapshot.snapshot_id)
        assert [(path, f.record_count) for path, f in _planned_files(table, snapshot.snapshot_id, None)] == [
            (_local_path(p), n) for p, n in _pyiceberg(table, snapshot.snapshot_id)
        ]
        _planned.clear()
        for month in [*MONTHS, "2025-04", "2025-05"]:
            mine = sorted(f.path for f in _partition_files(table, snapshot.snapshot_id, [month]))
            theirs = sorted(
                _local_path(p) for p, _ in _pyiceberg(table, snapshot.snapshot_id, EqualTo("month", month))
            )
            assert mine == theirs, (snapshot.snapshot_id, month)
    rows = table.scan(snapshot_id=table.metadata.current_snapshot_id).to_arrow().sort_by("id")
    assert rows.to_pydict() == {"id": [10, 11], "month": ["2025-02", "2025-01"]}


def test_an_unknown_snapshot_is_left_to_pyiceberg(tmp_path: Path) -> None:
    lake = _history(tmp_path)
    table = lake._load("silver.t")
    assert manifest_cache.live_data_files(table.metadata, table.io, 12345) is None


def test_a_manifest_list_is_read_once_and_again_when_its_file_changes(tmp_path: Path) -> None:
    lake = _history(tmp_path)
    table = lake._load("silver.t")
    snapshot = table.metadata.current_snapshot()
    assert snapshot is not None
    reads = []
    original = manifest_cache._manifests

    def counting(io, manifest_list):  # type: ignore[no-untyped-def]
        reads.append(manifest_list)
        return original(io, manifest_list)

    manifest_cache._manifests = counting  # type: ignore[assignment]
    try:
        manifest_cache._lists.clear()
        first = snapshot.manifests(table.io)
        again = snapshot.manifests(table.io)
        assert first == again == list(original(table.io, snapshot.manifest_list))
        assert len(reads) == 1
        os.utime(snapshot.manifest_list.removeprefix("file://"), ns=(1, 1))
        snapshot.manifests(table.io)
        assert len(reads) == 2
    finally:
        manifest_cache._manifests = original
