"""engine.lake.catalog.updated_metadata, the lake's staging of a commit without pyiceberg's deep copy, against
pyiceberg's own update_table_metadata: the same metadata (hence the same metadata.json) for the updates
the lake commits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyiceberg.table.update
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table, Transaction
from pyiceberg.table.update import update_table_metadata
from pyiceberg.table.update.snapshot import ManageSnapshots
from pyiceberg.types import StringType

import engine.lake.catalog
from engine.lake.catalog import updated_metadata
from engine.lake.store import Lake

ROWS = pa.table({"id": pa.array([1, 2], pa.int64())})


def _append(tx: Transaction) -> None:
    tx.append(ROWS, branch="dev")


def _overwrite(tx: Transaction) -> None:
    tx.overwrite(ROWS, branch="dev")


def _move_main(tx: Transaction) -> None:
    dev = tx.table_metadata.snapshot_by_name("dev")
    assert dev is not None
    ManageSnapshots(transaction=tx).create_branch(dev.snapshot_id, "main").commit()


def _add_column(tx: Transaction) -> None:
    with tx.update_schema() as update:
        update.add_column("note", StringType())


def _set_property(tx: Transaction) -> None:
    tx.set_properties({"phlo.test": "1"})


@pytest.mark.parametrize("change", [_append, _overwrite, _move_main, _add_column, _set_property])
def test_staged_metadata_equals_pyicebergs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Transaction], None]
) -> None:
    lake = Lake(tmp_path / "lake")
    for value in range(3):  # some history: snapshots, refs, a metadata log
        lake.write_model("silver.t", pa.table({"id": pa.array([value, value + 10], pa.int64())}))
    table: Table = lake._load("silver.t")
    # Both stamp "now" where no snapshot gives the time: the same instant for both.
    for module in (engine.lake.catalog, pyiceberg.table.update):
        monkeypatch.setattr(module, "datetime_to_millis", lambda _: 1_700_000_000_000)
    tx = Transaction(table)
    change(tx)
    updates = tx._updates
    assert updates

    ours = updated_metadata(table.metadata, updates, table.metadata_location)
    theirs = update_table_metadata(table.metadata, updates, metadata_location=table.metadata_location)

    assert ours == theirs
    assert ours.model_dump_json() == theirs.model_dump_json()
    assert ours != table.metadata


def test_a_commit_writes_what_pyiceberg_reads_back(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.write_model("silver.t", ROWS)
    lake.write_model("silver.t", pa.table({"id": pa.array([3], pa.int64())}))
    table = lake._load("silver.t")
    theirs = SqlCatalog(
        "phlo", uri=f"sqlite:///{tmp_path}/lake/catalog.sqlite", warehouse=f"file://{tmp_path}/lake/warehouse"
    ).load_table("silver.t")

    assert theirs.metadata_location == table.metadata_location
    assert theirs.metadata == table.metadata
    assert len(theirs.metadata.metadata_log) == len(table.metadata.metadata_log) > 0
    assert theirs.scan(snapshot_id=lake.snapshot_id("silver.t", "dev")).to_arrow().num_rows == 1
