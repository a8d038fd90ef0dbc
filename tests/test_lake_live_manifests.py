"""A model table's snapshots list only manifests that hold a live file, plus the one with the files the
snapshot itself removed (engine.lake.catalog.LiveOverwrite): rewriting a partition every hour no longer
adds a manifest to every later snapshot, a table that gathered such manifests sheds them on its next
write, and no reader sees other rows, now or at an earlier snapshot."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.table import Table

import engine.lake.store
from engine.lake.store import Lake

NAME = "silver.t"


def _rows(hour: int, months: tuple[str, ...] = ("2026-04", "2026-05")) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([hour * 10 + i for i in range(len(months))], pa.int64()),
            "reading_month": pa.array(list(months), pa.string()),
        }
    )


def _manifests(lake: Lake, branch: str = "dev") -> tuple[int, int]:
    """The head's manifests: how many, and how many hold no live file."""
    table: Table = lake._load(NAME)
    snapshot = table.metadata.snapshot_by_name(branch)
    assert snapshot is not None
    manifests = snapshot.manifests(table.io)
    dead = [m for m in manifests if not m.has_added_files() and not m.has_existing_files()]
    return len(manifests), len(dead)


def _ids(lake: Lake, snapshot_id: int | None = None) -> list[int]:
    table: Table = lake._load(NAME)
    scan = table.scan(snapshot_id=snapshot_id or table.metadata.snapshot_by_name("dev").snapshot_id)  # type: ignore[union-attr]
    return sorted(scan.to_arrow()["id"].to_pylist())


def test_hourly_rewrites_of_a_month_keep_the_manifest_list_short(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write_model(NAME, _rows(0), partition_by="reading_month")
    first = lake.snapshot_id(NAME, "dev")
    for hour in range(1, 13):
        lake.write_model(
            NAME, _rows(hour, ("2026-05",)), partition_by="reading_month", partitions={"2026-05"}
        )
        # April's file, May's new file, and the entry of May's file this snapshot removed.
        assert _manifests(lake) == (3, 1)
    assert _ids(lake) == [0, 120]
    assert first is not None and _ids(lake, first) == [0, 1]  # the first snapshot reads as it was


def test_a_table_with_gathered_manifests_sheds_them_on_its_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path / "lake")
    with monkeypatch.context() as before:
        # As the earlier release wrote: pyiceberg's own overwrite, which keeps the manifests of earlier removals.
        before.setattr(
            engine.lake.store,
            "overwrite",
            lambda tx, branch, properties: tx.update_snapshot(properties, branch=branch).overwrite(),
        )
        for hour in range(6):
            lake.write_model(
                NAME,
                _rows(hour, ("2026-04", "2026-05") if hour == 0 else ("2026-05",)),
                partition_by="reading_month",
                partitions=None if hour == 0 else {"2026-05"},
            )
        assert _manifests(lake) == (7, 5), "pyiceberg's overwrite keeps every removal's manifest"
    before_ids = _ids(lake)
    lake.write_model(NAME, _rows(9, ("2026-05",)), partition_by="reading_month", partitions={"2026-05"})
    assert _manifests(lake) == (3, 1)
    assert before_ids == [0, 50]
    assert _ids(lake) == [0, 90]
