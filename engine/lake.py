"""The Iceberg lake: tables with `main` and `dev` branches, partition-wise merges, and DuckDB views."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
    Not,
    Reference,
)
from pyiceberg.expressions.literals import literal
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.types import DoubleType, IntegerType, LongType, StringType, TimestamptzType

from engine.errors import LakeError
from engine.tables import TableDef

BOOKKEEPING_COLUMNS = ("_phlo_ingested_at", "_phlo_run_id")
"""Columns that record when and by which run a row was stored; a merge ignores them when comparing."""

_TABLE_PROPERTIES = {
    # pyiceberg weighs this in uncompressed Arrow bytes: a month of readings (~3 MB) stays one file.
    "write.target-file-size-bytes": str(256 * 1024 * 1024),
    # Hourly runs add a metadata.json each; keep the last 100 instead of all of them.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
    # A merge is computed from the snapshot it read; pyiceberg's retry would replay the partition
    # delete on a newer head and keep rows that a concurrent writer added (duplicates). With one
    # writer by lease a conflict is a bug to report, not to paper over.
    "commit.retry.num-retries": "0",
}

_DUCKDB_TYPES: dict[type, str] = {
    StringType: "VARCHAR",
    LongType: "BIGINT",
    IntegerType: "INTEGER",
    DoubleType: "DOUBLE",
    TimestamptzType: "TIMESTAMPTZ",
}

_NO_MATCH_WARNING = "Delete operation did not match any records"


@dataclass(frozen=True)
class MergeResult:
    """What one merge did. `partitions` are the partition values rewritten (empty when none)."""

    rows_in: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    partitions: tuple[str, ...]
    snapshot_id: int | None
    seconds: float


@dataclass(frozen=True)
class ExpiryResult:
    """What one expiry removed: snapshots from the metadata, and files no snapshot references."""

    snapshots_expired: int
    files_deleted: int
    bytes_freed: int


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot of a branch's history."""

    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    operation: str
    summary: dict[str, str]


class Lake:
    """The Iceberg warehouse under PHLO_HOME/lake: catalog.sqlite + warehouse/ (file://)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self._catalog_instance: SqlCatalog | None = None
        self._catalog_lock = threading.Lock()

    # -- tables and branches -------------------------------------------------------------------

    def ensure_table(self, tdef: TableDef) -> None:
        """Create the table if missing; guarantee `main` has a snapshot and `dev` branches from it.

        Safe when another process does the same at the same time: a lost race surfaces as a failed
        commit, after which the table is reloaded and the step found done.
        Raises LakeError when the catalog cannot be written or the table exists with another schema.
        """
        namespace = tdef.name.split(".")[0]
        with self._boundary("creating table", tdef.name, "main"):
            catalog = self._catalog()
            catalog.create_namespace_if_not_exists(namespace)
            table = catalog.create_table_if_not_exists(
                tdef.name,
                schema=tdef.schema,
                partition_spec=tdef.partition_spec,
                properties=_TABLE_PROPERTIES,
            )
        _check_declaration(table, tdef)
        with self._boundary("creating branches of", tdef.name, "main/dev"):
            if table.metadata.snapshot_by_name("main") is None:
                try:
                    # pyiceberg commits a snapshot even for an empty append: that is main's root.
                    table.append(tdef.arrow_schema.empty_table(), branch="main")
                except CommitFailedException:
                    table = catalog.load_table(tdef.name)
            main = table.metadata.snapshot_by_name("main")
            if main is None:
                raise LakeError(
                    f"branch main of {tdef.name} has no snapshot after creating one",
                    "check the catalog under the lake directory; another tool may be writing it",
                )
            if "dev" not in table.metadata.refs:
                try:
                    table.manage_snapshots().create_branch(main.snapshot_id, "dev").commit()
                except CommitFailedException:
                    table = catalog.load_table(tdef.name)
                    if "dev" not in table.metadata.refs:
                        raise

    def snapshot_id(self, name: str, branch: str) -> int | None:
        """The snapshot at the head of `branch`, or None when the branch does not exist.

        Raises LakeError when the table does not exist or the catalog cannot be read.
        """
        with self._boundary("reading the head of", name, branch):
            snapshot = self._load(name).metadata.snapshot_by_name(branch)
        return snapshot.snapshot_id if snapshot is not None else None

    def history(self, name: str, branch: str) -> list[SnapshotInfo]:
        """Ancestors of the head of `branch`, newest first. Raises LakeError for a missing branch."""
        with self._boundary("reading the history of", name, branch):
            table = self._load(name)
            head = _head(table, name, branch)
            return [
                SnapshotInfo(
                    snapshot_id=snapshot.snapshot_id,
                    parent_id=snapshot.parent_snapshot_id,
                    timestamp_ms=snapshot.timestamp_ms,
                    operation=snapshot.summary.operation.value if snapshot.summary else "",
                    summary=dict(snapshot.summary.additional_properties) if snapshot.summary else {},
                )
                for snapshot in ancestors_of(table.metadata.snapshot_by_id(head), table.metadata)
            ]

    # -- reading -------------------------------------------------------------------------------

    def data_files(
        self, name: str, branch: str, row_filter: BooleanExpression | str | None = None
    ) -> list[str]:
        """Paths of the data files of the head snapshot of `branch` that may hold rows matching `row_filter`.

        Local files are returned as plain paths, other storage as URIs. Files of older snapshots,
        and files written by a merge that never committed, are never returned.
        Raises LakeError for a missing table or branch, or when a file has delete files.
        """
        with self._boundary("listing the files of", name, branch):
            table = self._load(name)
            return _files(table, name, branch, _head(table, name, branch), row_filter)

    def read_arrow(
        self,
        name: str,
        branch: str,
        row_filter: BooleanExpression | str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The rows of the head of `branch` matching `row_filter`, as Arrow (empty with the schema if none).

        Raises LakeError for a missing table, branch or column.
        """
        with self._boundary("reading", name, branch):
            table = self._load(name)
            scan = table.scan(
                snapshot_id=_head(table, name, branch),
                row_filter=row_filter if row_filter is not None else AlwaysTrue(),
                selected_fields=tuple(columns) if columns is not None else ("*",),
            )
            return _plain_strings(scan.to_arrow())

    def register_duckdb(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        branch: str,
        *,
        as_name: str | None = None,
    ) -> None:
        """Create (or replace) a view `as_name` (default: the Iceberg name) over the head of `branch`.

        The view reads the snapshot's Parquet files in place; it does not follow later commits.
        Raises LakeError for a missing table or branch, or when DuckDB refuses the view.
        """
        view = as_name or name
        with self._boundary("registering in DuckDB", name, branch):
            table = self._load(name)
            files = _files(table, name, branch, _head(table, name, branch), None)
            schema, _, view_name = view.rpartition(".")
            if schema:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
            target = f"{_ident(schema)}.{_ident(view_name)}" if schema else _ident(view_name)
            con.execute(f"CREATE OR REPLACE VIEW {target} AS {_select_sql(con, table.schema(), files)}")

    # -- writing -------------------------------------------------------------------------------

    def merge(
        self,
        tdef: TableDef,
        batch: pa.Table,
        *,
        branch: str = "dev",
        snapshot_properties: dict[str, str] | None = None,
    ) -> MergeResult:
        """Upsert `batch` by `tdef.key` into `branch`, rewriting only the partitions that change.

        A batch row replaces the stored row with the same key when any column other than the
        bookkeeping columns differs; the last batch row per key wins. A stored row whose key arrives
        in another partition is removed from its old partition in the same commit. When nothing
        changes no snapshot is committed (snapshot_id None).
        Raises LakeError when the batch does not fit the table's types, or on any lake failure.
        """
        started = time.perf_counter()
        key_column, partition_column = tdef.key, tdef.partition_column
        if key_column is None or partition_column is None:
            raise LakeError(
                f"merge into {tdef.name} needs a key and a partition column",
                "use Lake.append for tables without a key",
            )
        if tdef.arrow_schema.field(partition_column).type != pa.string():
            raise LakeError(
                f"merge into {tdef.name} needs a string partition column, {tdef.partition_column!r} is not",
                "declare the partition column as a string in engine/tables.py",
            )
        incoming = _conform(batch, tdef)
        rows_in = incoming.num_rows
        if rows_in == 0:
            return MergeResult(0, 0, 0, 0, (), None, time.perf_counter() - started)
        with self._boundary("merging into", tdef.name, branch):
            table = self._load(tdef.name)
            head = _head(table, tdef.name, branch)
            plan = _plan_merge(table, tdef, branch, head, incoming, key_column, partition_column)
            if not plan.changed:
                return MergeResult(rows_in, 0, 0, plan.unchanged, (), None, time.perf_counter() - started)
            rewritten = _conform(plan.rows, tdef)
            emptied = sorted(set(plan.changed) - set(pc.unique(rewritten[partition_column]).to_pylist()))
            properties = dict(snapshot_properties or {})
            with warnings.catch_warnings():
                # dynamic_partition_overwrite warns whenever a partition is new, which is expected.
                warnings.filterwarnings("ignore", message=_NO_MATCH_WARNING, category=UserWarning)
                with table.transaction() as tx:
                    if emptied:
                        tx.delete(_is_in(partition_column, emptied), properties, branch=branch)
                    tx.dynamic_partition_overwrite(rewritten, properties, branch=branch)
            return MergeResult(
                rows_in=rows_in,
                rows_inserted=plan.inserted,
                rows_updated=plan.updated,
                rows_unchanged=plan.unchanged,
                partitions=plan.changed,
                snapshot_id=_head(table, tdef.name, branch),
                seconds=time.perf_counter() - started,
            )

    def append(
        self,
        tdef: TableDef,
        batch: pa.Table,
        *,
        branch: str = "dev",
        snapshot_properties: dict[str, str] | None = None,
    ) -> int | None:
        """Append `batch` to `branch` as is; the new head snapshot id, or None for an empty batch.

        Raises LakeError when the batch does not fit the table's types, or on any lake failure.
        """
        rows = _conform(batch, tdef)
        if rows.num_rows == 0:
            return None
        with self._boundary("appending to", tdef.name, branch):
            table = self._load(tdef.name)
            _head(table, tdef.name, branch)
            table.append(rows, snapshot_properties=dict(snapshot_properties or {}), branch=branch)
            return _head(table, tdef.name, branch)

    def set_branch(self, name: str, branch: str, snapshot_id: int) -> None:
        """Point `branch` at `snapshot_id`, an existing snapshot of the table (creating the branch if missing).

        Makes no commit when the branch is there already. Any move is allowed, forward or back:
        callers such as promotion check the lineage first.
        Raises LakeError for an unknown snapshot or when the catalog cannot be written.
        """
        with self._boundary("moving a branch of", name, branch):
            table = self._load(name)
            current = table.metadata.snapshot_by_name(branch)
            if current is not None and current.snapshot_id == snapshot_id:
                return
            if table.metadata.snapshot_by_id(snapshot_id) is None:
                raise LakeError(
                    f"snapshot {snapshot_id} of lake table {name} does not exist",
                    "it may have been expired; run again to get a fresh dev snapshot",
                )
            # create_branch sets the ref whether or not it exists, asserting its current head.
            table.manage_snapshots().create_branch(snapshot_id, branch).commit()

    def expire_snapshots(self, name: str, *, older_than: dt.datetime) -> ExpiryResult:
        """Forget snapshots committed before `older_than`, and delete the data and manifest files
        (local warehouse only) that no remaining snapshot references and that were written before
        `older_than`. Branch and tag heads are kept, and so is every snapshot between a branch head
        and the head of another branch it descends from (dev's unpromoted work down to main), so
        that promotion can still find main among dev's ancestors.

        Needed because pyiceberg 0.12 deep-copies the whole table metadata dozens of times per
        commit (a merge slows by ~2 ms per snapshot kept), and every merge leaves the previous
        version of its partitions' files behind. Call it from the writer, between runs (files of
        a write in progress would look unreferenced), with a cutoff hours or days in the past so
        that readers still on a recent snapshot keep their files. Time travel to an expired
        snapshot is gone.
        Raises LakeError when the table cannot be read or written, or a file cannot be deleted.
        """
        with self._boundary("expiring snapshots of", name, "all branches"):
            table = self._load(name)
            heads = {ref.snapshot_id for ref in table.metadata.refs.values()}
            unpromoted = _unpromoted(table, heads)
            # pyiceberg expires by age in one pass (by id it deep-copies the metadata per id), so
            # the cutoff moves before the oldest unpromoted snapshot to keep them all.
            cutoff_ms = min(
                [int(older_than.timestamp() * 1000)]
                + [s.timestamp_ms for s in table.metadata.snapshots if s.snapshot_id in unpromoted]
            )
            expired = sum(
                1
                for snapshot in table.metadata.snapshots
                if snapshot.timestamp_ms < cutoff_ms and snapshot.snapshot_id not in heads
            )
            if expired:
                table.maintenance.expire_snapshots().older_than(
                    dt.datetime.fromtimestamp(cutoff_ms / 1000, tz=dt.UTC)
                ).commit()
            location = urlparse(table.location())
            if location.scheme != "file":
                return ExpiryResult(expired, 0, 0)
            referenced = _referenced_files(table)
            cutoff = older_than.timestamp()
            deleted, freed = 0, 0
            for folder in ("data", "metadata"):
                for path in (Path(location.path) / folder).rglob("*"):
                    if path.suffix not in (".parquet", ".avro") or not path.is_file():
                        continue
                    stat = path.stat()
                    if stat.st_mtime < cutoff and os.path.realpath(path) not in referenced:
                        path.unlink()
                        deleted, freed = deleted + 1, freed + stat.st_size
            return ExpiryResult(expired, deleted, freed)

    # -- internals -----------------------------------------------------------------------------

    def _catalog(self) -> SqlCatalog:
        with self._catalog_lock:
            if self._catalog_instance is None:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                (self.root / "warehouse").mkdir(mode=0o700, exist_ok=True)
                database = self.root / "catalog.sqlite"
                # WAL lets readers in other processes load metadata while the writer commits.
                with closing(sqlite3.connect(database, timeout=30)) as connection:
                    connection.execute("PRAGMA journal_mode=WAL")
                self._catalog_instance = SqlCatalog(
                    "phlo",
                    uri=f"sqlite:///{database}",
                    warehouse=f"file://{self.root}/warehouse",
                )
            return self._catalog_instance

    def _load(self, name: str) -> Table:
        try:
            return self._catalog().load_table(name)
        except NoSuchTableError as e:
            raise LakeError(
                f"lake table {name} does not exist in {self.root}",
                "run `phlo-tui run` once to create the lake tables",
            ) from e

    @contextmanager
    def _boundary(self, action: str, name: str, branch: str) -> Iterator[None]:
        """Turn any third-party failure into a LakeError saying what, where and what next."""
        try:
            yield
        except LakeError:
            raise
        except CommitFailedException as e:
            raise LakeError(
                f"{action} {name} (branch {branch}) failed: another process changed the table ({e})",
                "make sure only one phlo-tui process writes this home, then run again",
            ) from e
        except OSError as e:
            raise LakeError(
                f"{action} {name} (branch {branch}) failed: {e}",
                f"check free disk space and permissions under {self.root}",
            ) from e
        except Exception as e:
            raise LakeError(
                f"{action} {name} (branch {branch}) failed: {type(e).__name__}: {e}",
                f"the lake under {self.root} may be damaged or written by another version; "
                "see the log for the traceback",
            ) from e


@dataclass(frozen=True)
class _MergePlan:
    """The outcome of comparing a batch with the stored partitions, before anything is written."""

    rows: pa.Table
    changed: tuple[str, ...]
    inserted: int
    updated: int
    unchanged: int


def _plan_merge(
    table: Table,
    tdef: TableDef,
    branch: str,
    head: int,
    incoming: pa.Table,
    key_column: str,
    partition_column: str,
) -> _MergePlan:
    """Read the partitions the batch touches and compute their new contents in DuckDB."""
    key, part = _ident(key_column), _ident(partition_column)
    touched = sorted(pc.unique(incoming[partition_column]).to_pylist())
    stored_files = _files(table, tdef.name, branch, head, _is_in(partition_column, touched))
    # Keys are ObjectIds, which start with their time: the key range prunes nearly every other
    # partition by file statistics, so finding keys that moved partition costs little.
    keys = pc.min_max(incoming[key_column])
    probe_files = _files(
        table,
        tdef.name,
        branch,
        head,
        And(
            Not(_is_in(partition_column, touched)),
            And(
                GreaterThanOrEqual(term=Reference(key_column), value=literal(keys["min"].as_py())),
                LessThanOrEqual(term=Reference(key_column), value=literal(keys["max"].as_py())),
            ),
        ),
    )
    columns = ", ".join(_ident(field.name) for field in tdef.arrow_schema)
    content = [field.name for field in tdef.arrow_schema if field.name not in BOOKKEEPING_COLUMNS]
    same = " AND ".join(f"i.{_ident(c)} IS NOT DISTINCT FROM s.{_ident(c)}" for c in content)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("batch", incoming.append_column("__order", pa.array(np.arange(incoming.num_rows))))
        con.execute(
            f"CREATE TEMP TABLE incoming AS SELECT {columns} FROM batch "
            f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY __order DESC) = 1"
        )
        con.unregister("batch")
        if probe_files:
            con.execute(f"CREATE TEMP VIEW probe AS {_select_sql(con, table.schema(), probe_files)}")
            moved_from = [
                row[0]
                for row in con.sql(
                    f"SELECT DISTINCT {part} FROM probe SEMI JOIN incoming USING ({key})"
                ).fetchall()
            ]
            if moved_from:
                stored_files += _files(table, tdef.name, branch, head, _is_in(partition_column, moved_from))
        con.execute(f"CREATE TEMP VIEW stored AS {_select_sql(con, table.schema(), stored_files)}")
        con.execute(
            f"CREATE TEMP TABLE matched AS SELECT i.{key} AS key, s.{part} AS old_part, "
            f"CASE WHEN s.{key} IS NULL THEN 'insert' WHEN {same} THEN 'unchanged' "
            f"ELSE 'update' END AS change FROM incoming i LEFT JOIN stored s ON i.{key} = s.{key}"
        )
        counts = dict(con.sql("SELECT change, count(*) FROM matched GROUP BY change").fetchall())
        # A partition changes when a row enters it, or when an updated row leaves it for another.
        con.execute(
            f"CREATE TEMP TABLE changed AS SELECT i.{part} AS part FROM incoming i "
            f"JOIN matched m ON i.{key} = m.key WHERE m.change <> 'unchanged' "
            "UNION SELECT old_part FROM matched WHERE change = 'update'"
        )
        changed = tuple(row[0] for row in con.sql("SELECT part FROM changed ORDER BY 1").fetchall())
        rows = con.sql(
            f"SELECT {columns} FROM ("
            f"SELECT {columns} FROM stored ANTI JOIN matched m "
            f"ON stored.{key} = m.key AND m.change <> 'unchanged' "
            f"UNION ALL SELECT {columns} FROM incoming SEMI JOIN matched m "
            f"ON incoming.{key} = m.key AND m.change <> 'unchanged'"
            f") WHERE {part} IN (SELECT part FROM changed)"
        ).to_arrow_table()
    return _MergePlan(
        rows=rows,
        changed=changed,
        inserted=counts.get("insert", 0),
        updated=counts.get("update", 0),
        unchanged=counts.get("unchanged", 0),
    )


def _is_in(column: str, values: Sequence[str]) -> BooleanExpression:
    return In(term=Reference(column), values={literal(v) for v in values})


def _unpromoted(table: Table, heads: set[int]) -> set[int]:
    """Snapshots between a branch head and the nearest other head among its ancestors (both excluded)."""
    unpromoted: set[int] = set()
    for head in heads:
        path: list[int] = []
        for snapshot in ancestors_of(table.metadata.snapshot_by_id(head), table.metadata):
            if snapshot.snapshot_id in heads and snapshot.snapshot_id != head:
                unpromoted.update(path)
                break
            if snapshot.snapshot_id != head:
                path.append(snapshot.snapshot_id)
    return unpromoted


def _referenced_files(table: Table) -> set[str]:
    """Real paths of every manifest list, manifest and live data file of the table's snapshots."""
    referenced: set[str] = set()
    seen_manifests: set[str] = set()
    for snapshot in table.metadata.snapshots:
        referenced.add(os.path.realpath(_local_path(snapshot.manifest_list)))
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            referenced.add(os.path.realpath(_local_path(manifest.manifest_path)))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                referenced.add(os.path.realpath(_local_path(entry.data_file.file_path)))
    return referenced


def _head(table: Table, name: str, branch: str) -> int:
    """The head snapshot id of `branch`; a missing branch is an error, never created implicitly."""
    snapshot = table.metadata.snapshot_by_name(branch)
    if snapshot is None:
        raise LakeError(
            f"branch {branch} of lake table {name} does not exist",
            "run `phlo-tui run` once so the lake tables get their main and dev branches",
        )
    return snapshot.snapshot_id


def _files(
    table: Table, name: str, branch: str, snapshot_id: int, row_filter: BooleanExpression | str | None
) -> list[str]:
    """The data files of one snapshot (planned from its manifests, never by listing directories)."""
    scan = table.scan(
        snapshot_id=snapshot_id, row_filter=row_filter if row_filter is not None else AlwaysTrue()
    )
    files = []
    for task in scan.plan_files():
        if task.delete_files:
            raise LakeError(
                f"lake table {name} (branch {branch}) has delete files on {task.file.file_path}",
                "phlo-tui only writes copy-on-write; rewrite the table without merge-on-read deletes",
            )
        files.append(_local_path(task.file.file_path))
    return files


def _local_path(uri: str) -> str:
    """A file:// URI as the plain path DuckDB reads; other schemes stay URIs."""
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri


def _select_sql(con: duckdb.DuckDBPyConnection, schema: Schema, files: list[str]) -> str:
    """SELECT of the table's columns over `files`, or an empty typed relation when there are none."""
    if files:
        # The driver renders the file list as escaped literals.
        relation = con.read_parquet(files).select(*[_ident(f.name) for f in schema.fields])
        return relation.sql_query()
    typed_nulls = ", ".join(
        f"CAST(NULL AS {_duckdb_type(field.field_type)}) AS {_ident(field.name)}" for field in schema.fields
    )
    return f"SELECT {typed_nulls} WHERE false"


def _duckdb_type(field_type: Any) -> str:
    try:
        return _DUCKDB_TYPES[type(field_type)]
    except KeyError:
        raise LakeError(
            f"no DuckDB type for Iceberg type {field_type}",
            "add the type to _DUCKDB_TYPES in engine/lake.py",
        ) from None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_declaration(table: Table, tdef: TableDef) -> None:
    """Refuse a stored table whose columns or partitioning differ from its declaration."""

    def columns(schema: Schema) -> list[tuple[str, str, bool]]:
        return [(f.name, str(f.field_type), f.required) for f in schema.fields]

    def partitions(t_schema: Schema, fields: Sequence[Any]) -> list[tuple[str, str]]:
        return [(t_schema.find_column_name(f.source_id) or "", str(f.transform)) for f in fields]

    stored_spec = table.spec().fields
    if columns(table.schema()) != columns(tdef.schema) or partitions(
        table.schema(), stored_spec
    ) != partitions(tdef.schema, tdef.partition_spec.fields):
        raise LakeError(
            f"lake table {tdef.name} exists with other columns or partitioning than declared",
            "the lake was written by another version of phlo-tui; move the lake directory aside "
            "and run a backfill",
        )


def _conform(batch: pa.Table, tdef: TableDef) -> pa.Table:
    """`batch` with exactly the table's Arrow schema; casts only when no value changes.

    Missing nullable columns become nulls. Unknown columns, missing required columns, nulls in
    required columns, lossy casts and timestamps without a time zone raise LakeError.
    """
    schema = tdef.arrow_schema
    unknown = sorted(set(batch.column_names) - set(schema.names))
    if unknown:
        raise LakeError(
            f"batch for {tdef.name} has columns the table does not have: {', '.join(unknown)}",
            "map or drop them before writing, or declare them in engine/tables.py",
        )
    columns = []
    for field in schema:
        if field.name not in batch.column_names:
            if not field.nullable:
                raise LakeError(
                    f"batch for {tdef.name} lacks required column {field.name!r}",
                    "fill the column before writing",
                )
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch[field.name]
        if column.type != field.type:
            column = _cast(column, field, tdef.name)
        if not field.nullable and column.null_count:
            raise LakeError(
                f"batch for {tdef.name} has {column.null_count} null(s) in required column {field.name!r}",
                "validation should have quarantined these rows; check the schema in schemas/",
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, field: pa.Field, table: str) -> pa.ChunkedArray:
    naive_to_zoned = (
        pa.types.is_timestamp(column.type)
        and column.type.tz is None
        and pa.types.is_timestamp(field.type)
        and field.type.tz is not None
    )
    if naive_to_zoned:
        raise LakeError(
            f"column {field.name!r} of the batch for {table} is a timestamp without time zone",
            "localise it (e.g. to UTC) before writing; the lake stores instants",
        )
    try:
        return column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise LakeError(
            f"column {field.name!r} of the batch for {table} cannot be stored as {field.type} "
            f"(it is {column.type}): {e}",
            "convert the values before writing; only lossless casts are made",
        ) from e


def _plain_strings(arrow: pa.Table) -> pa.Table:
    """pyiceberg returns large_string for some scans and string for others; always use string."""
    schema = pa.schema(
        [
            field.with_type(pa.string()) if pa.types.is_large_string(field.type) else field
            for field in arrow.schema
        ]
    )
    return arrow.cast(schema) if schema != arrow.schema else arrow
