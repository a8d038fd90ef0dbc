"""engine.lake.manifest_cache: a manifest's entries read once per process, field for field what pyiceberg's
own reading gives, and read again when the file at the path is another one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa

from engine.lake import manifest_cache
from engine.lake.store import Lake


def _manifests(lake: Lake, name: str) -> list:  # type: ignore[type-arg]
    table = lake._load(name)
    snapshot = table.metadata.snapshot_by_name("dev")
    assert snapshot is not None
    return list(snapshot.manifests(table.io)), table.io  # type: ignore[return-value]


def _fields(entries: list) -> list:  # type: ignore[type-arg]
    """Every field of every entry and its data file (a DataFile equals any other of the same path)."""
    return [
        (
            e.status,
            e.snapshot_id,
            e.sequence_number,
            e.file_sequence_number,
            e.data_file.spec_id,
            e.data_file._data,
        )
        for e in entries
    ]


def test_cached_entries_equal_a_fresh_read_and_are_read_once(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write_model(
        "silver.t", pa.table({"id": [1, 2], "month": ["2025-01", "2025-02"]}), partition_by="month"
    )
    lake.write_model(
        "silver.t", pa.table({"id": [3], "month": ["2025-02"]}), partition_by="month", partitions={"2025-02"}
    )
    manifests, io = _manifests(lake, "silver.t")
    assert len(manifests) >= 2
    reads = []
    original = manifest_cache._read

    def counting(manifest: object, io: object, discard_deleted: bool = True) -> list:  # type: ignore[type-arg]
        reads.append(manifest)
        return original(manifest, io, discard_deleted)  # type: ignore[arg-type]

    manifest_cache._read = counting  # type: ignore[assignment]
    try:
        manifest_cache._entries.clear()
        for discard in (True, False):
            for manifest in manifests:
                first = manifest.fetch_manifest_entry(io, discard_deleted=discard)
                again = manifest.fetch_manifest_entry(io, discard_deleted=discard)
                fresh = manifest_cache._pyiceberg_read(manifest, io, discard)
                assert first == again == fresh
                assert _fields(first) == _fields(again) == _fields(fresh)
        assert len(reads) == 2 * len(manifests)
        # A file of another size or age at the same path (a relocated home) is read again.
        path = Path(manifests[0].manifest_path.removeprefix("file://"))
        shutil.copyfile(path, path.with_suffix(".bak"))
        os.utime(path, ns=(1, 1))
        manifests[0].fetch_manifest_entry(io)
        assert len(reads) == 2 * len(manifests) + 1
    finally:
        manifest_cache._read = original  # type: ignore[assignment]


def test_a_table_written_through_the_cache_reads_back_the_same(tmp_path: Path) -> None:
    """Overwrites whose commits read the parent's manifests from the cache keep exactly the right files."""
    lake = Lake(tmp_path / "lake")
    months = ["2025-01", "2025-02", "2025-03"]
    lake.write_model("silver.t", pa.table({"id": [1, 2, 3], "month": months}), partition_by="month")
    for value in range(4, 8):
        month = months[value % 3]
        lake.write_model(
            "silver.t", pa.table({"id": [value], "month": [month]}), partition_by="month", partitions={month}
        )
    table = lake._load("silver.t")
    manifest_cache._entries.clear()
    rows = table.scan(snapshot_id=lake.snapshot_id("silver.t", "dev")).to_arrow().sort_by("month")
    assert rows.to_pydict() == {"id": [6, 7, 5], "month": months}
