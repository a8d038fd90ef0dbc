"""engine.lake.sqlite_catalog against pyiceberg's own SqlCatalog on the same SQLite file: the same tables,
rows each can read of the other, and the same optimistic concurrency both ways."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, TableAlreadyExistsError

from engine.lake.sqlite_catalog import SqliteCatalog

ROWS = pa.table({"id": pa.array([1, 2], pa.int64()), "name": pa.array(["a", "b"])})
NO_RETRY = {"commit.retry.num-retries": "0"}
"""As the lake's tables (engine.lake.store): a conflict fails the commit instead of replaying it."""


def _catalogs(tmp_path: Path) -> tuple[SqliteCatalog, SqlCatalog]:
    database, warehouse = tmp_path / "catalog.sqlite", f"file://{tmp_path}/warehouse"
    ours = SqliteCatalog("phlo", database, warehouse)
    return ours, SqlCatalog("phlo", uri=f"sqlite:///{database}", warehouse=warehouse)


def _catalog_rows(database: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as con:
        return (
            con.execute("select * from iceberg_tables order by table_name").fetchall()
            + con.execute("select * from iceberg_namespace_properties order by namespace").fetchall()
        )


def test_the_catalog_tables_are_the_ones_pyiceberg_creates(tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    SqliteCatalog("phlo", tmp_path / "ours" / "c.sqlite", f"file://{tmp_path}/w")
    SqlCatalog("phlo", uri=f"sqlite:///{tmp_path}/theirs/c.sqlite", warehouse=f"file://{tmp_path}/w")

    def schema(path: Path) -> list[tuple[object, ...]]:
        with closing(sqlite3.connect(path)) as con:
            return con.execute("select type, name, tbl_name, sql from sqlite_master order by name").fetchall()

    assert schema(tmp_path / "ours" / "c.sqlite") == schema(tmp_path / "theirs" / "c.sqlite")


def test_pyiceberg_reads_and_writes_what_this_catalog_wrote_and_back(tmp_path: Path) -> None:
    ours, theirs = _catalogs(tmp_path)
    ours.create_namespace("raw")
    ours.create_table("raw.ours", schema=ROWS.schema).append(ROWS)
    theirs.create_table("raw.theirs", schema=ROWS.schema).append(ROWS)

    assert theirs.load_table("raw.ours").scan().to_arrow().sort_by("id").equals(ROWS)
    assert ours.load_table("raw.theirs").scan().to_arrow().sort_by("id").equals(ROWS)
    theirs.load_table("raw.ours").append(ROWS)
    ours.load_table("raw.theirs").append(ROWS)
    for name in ("raw.ours", "raw.theirs"):
        mine, pyicebergs = ours.load_table(name), theirs.load_table(name)
        assert mine.metadata_location == pyicebergs.metadata_location
        assert mine.metadata == pyicebergs.metadata
        assert mine.scan().to_arrow().num_rows == 4
    assert ours.namespace_exists("raw") and theirs.namespace_exists("raw")
    assert ours.load_namespace_properties("raw") == theirs.load_namespace_properties("raw")
    assert sorted(ours.list_tables("raw")) == [("raw", "ours"), ("raw", "theirs")]
    # Each row written alike: the table type, the previous location, the namespace's minimal property.
    rows = _catalog_rows(tmp_path / "catalog.sqlite")
    assert [row[-1] for row in rows[:2]] == ["TABLE", "TABLE"]
    assert all(row[4] is not None for row in rows[:2])
    assert rows[2:] == [("phlo", "raw", "exists", "true")]


@pytest.mark.parametrize("stale_is_ours", [True, False])
def test_a_commit_from_a_stale_table_fails_either_way(tmp_path: Path, stale_is_ours: bool) -> None:
    ours, theirs = _catalogs(tmp_path)
    ours.create_namespace("raw")
    ours.create_table("raw.t", schema=ROWS.schema, properties=NO_RETRY)
    stale = (ours if stale_is_ours else theirs).load_table("raw.t")
    (theirs if stale_is_ours else ours).load_table("raw.t").append(ROWS)
    moved = ours.load_table("raw.t").metadata_location

    with pytest.raises(CommitFailedException):
        stale.append(ROWS)

    assert ours.load_table("raw.t").metadata_location == moved
    assert theirs.load_table("raw.t").scan().to_arrow().num_rows == 2


def test_a_row_moved_under_a_commit_fails_it(tmp_path: Path) -> None:
    """The row is compared when it is updated, not only when the table is loaded."""
    ours, _ = _catalogs(tmp_path)
    ours.create_namespace("raw")
    table = ours.create_table("raw.t", schema=ROWS.schema, properties=NO_RETRY)
    original = ours._update_and_stage_table

    def stage_then_race(*args: object, **kwargs: object) -> object:
        staged = original(*args, **kwargs)  # type: ignore[arg-type]
        with closing(sqlite3.connect(tmp_path / "catalog.sqlite")) as con, con:
            con.execute("update iceberg_tables set metadata_location = metadata_location || '#other'")
        return staged

    ours._update_and_stage_table = stage_then_race  # type: ignore[method-assign]
    with pytest.raises(CommitFailedException):
        table.append(ROWS)


def test_creating_what_exists_is_refused_and_writes_no_metadata(tmp_path: Path) -> None:
    ours, theirs = _catalogs(tmp_path)
    theirs.create_namespace("raw")
    with pytest.raises(NamespaceAlreadyExistsError):
        ours.create_namespace("raw")
    ours.create_namespace_if_not_exists("raw")
    created = ours.create_table("raw.t", schema=ROWS.schema)
    metadata = Path(created.metadata_location.removeprefix("file://")).parent
    with pytest.raises(TableAlreadyExistsError):
        ours.create_table("raw.t", schema=ROWS.schema)
    files = sorted(metadata.iterdir())

    again = ours.create_table_if_not_exists("raw.t", schema=ROWS.schema)

    assert again.metadata_location == created.metadata_location
    assert sorted(metadata.iterdir()) == files


def test_a_run_of_the_lake_imports_no_sqlalchemy(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import pyarrow as pa
        from engine.lake.store import Lake
        lake = Lake(Path(sys.argv[1]))
        lake.write_model("silver.t", pa.table({"id": [1, 2]}))
        assert lake.table_exists("silver.t")
        print(sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "lake")], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
