"""The Iceberg lake: tables with `main` and `dev` branches, partition-wise merges, and DuckDB views."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import (
    AlwaysTrue,
    BooleanExpression,
)
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.table.update import (
    AssertRefSnapshotId,
    AssertTableUUID,
    RemoveSnapshotsUpdate,
    TableRequirement,
)
from pyiceberg.table.update.snapshot import ManageSnapshots
from pyiceberg.typedef import Record
from sqlalchemy.exc import IntegrityError

from engine.errors import LakeError
from engine.ingest.tables import TableDef
from engine.lake.catalog import StagedTransaction, manage_snapshots, transaction
from engine.lake.conform import (
    _arrow_schema,
    _check_declaration,
    _conform,
    _plain_strings,
)
from engine.lake.evolve import add_declared_columns
from engine.lake.files import (
    _columns,
    _files,
    _fingerprint,
    _ident,
    _is_in,
    _local_path,
    _optional,
    _partition_column,
    _partition_files,
    _planned_files,
    _planned_tasks,
    _remember_files,
    _select_sql,
    _snapshot_schema,
    _StoredFile,
)
from engine.lake.merge import (
    _plan_merge,
    _same_rows,
)
from engine.lake.opening import (
    MOVED_CATALOG,
    _ensure_branches,
    _open_catalog,
    _open_postgres_catalog,
)
from engine.lake.scratch import scratch
from engine.lake.views import Column, create_view

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
    """The Iceberg warehouse under PHLO_HOME/lake: warehouse/ (file://) and its SQL catalog, the file
    catalog.sqlite or, with `catalog_uri`, a PostgreSQL database (engine.lake.catalog_uri)."""

    def __init__(self, root: Path, catalog_uri: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.catalog_uri = catalog_uri
        self._catalog_instance: SqlCatalog | None = None
        self._catalog_lock = threading.Lock()
        self._pinned: dict[str, Table] | None = None

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Within the block, load each table from the catalog once and reuse it (its commits keep
        it current). Only for the process that holds the writer lease, for a run's own steps: a
        commit by anyone else meanwhile would go unseen until it makes one of ours fail (and a
        failed commit unpins). Nested blocks share the outer one."""
        if self._pinned is not None:
            yield
            return
        self._pinned = {}
        try:
            yield
        finally:
            self._pinned = None

    # -- tables and branches -------------------------------------------------------------------

    def ensure_table(self, tdef: TableDef) -> None:
        """Create the table if missing; guarantee `main` has a snapshot and `dev` branches from it.

        Safe when another process does the same at the same time: a lost race surfaces as a failed
        commit, after which the table is reloaded and the step found done.
        Raises LakeError when the catalog cannot be written or the table exists with another schema.
        """
        namespace = tdef.name.split(".")[0]
        with self._boundary(f"creating lake table {tdef.name}"):
            catalog = self._catalog()
            try:
                catalog.create_namespace_if_not_exists(namespace)
            except IntegrityError:
                # The SQL catalog checks, then inserts: a process that loses that race gets the
                # unique-key error instead of NamespaceAlreadyExistsError.
                if not catalog.namespace_exists(namespace):
                    raise
            table = catalog.create_table_if_not_exists(
                tdef.name,
                schema=tdef.schema,
                partition_spec=tdef.partition_spec,
                properties=_TABLE_PROPERTIES,
            )
            table = add_declared_columns(table, tdef)
        _check_declaration(table, tdef)
        with self._boundary(f"creating branches main and dev of {tdef.name}"):
            _ensure_branches(catalog, table)

    def snapshot_id(self, name: str, branch: str) -> int | None:
        """The snapshot at the head of `branch`, or None when the table or the branch does not exist.

        Raises LakeError when the catalog cannot be read.
        """
        with self._boundary(f"reading the head of branch {branch} of {name}"):
            try:
                table = self._load_table(name)
            except NoSuchTableError:
                return None
            snapshot = table.metadata.snapshot_by_name(branch)
        return snapshot.snapshot_id if snapshot is not None else None

    def history(self, name: str, branch: str) -> list[SnapshotInfo]:
        """Ancestors of the head of `branch`, newest first. Raises LakeError for a missing branch."""
        with self._boundary(f"reading the history of branch {branch} of {name}"):
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
        with self._boundary(f"listing the files of {name} on branch {branch}"):
            table = self._load(name)
            return _files(table, _head(table, name, branch), row_filter)

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
        with self._boundary(f"reading {name} on branch {branch}"):
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
        partitions: Iterable[str] | None = None,
        snapshot_id: int | None = None,
    ) -> None:
        """Create (or replace) a view `as_name` (default: the Iceberg name) over the head of `branch`,
        or over `snapshot_id` when given (a promotion's snapshot of main, say).

        The view reads the snapshot's Parquet files in place, with the columns of the schema the
        snapshot was written with; it does not follow later commits. With `partitions`, only the
        files of those values of the table's identity partition column (whole partitions); an
        unpartitioned table is registered whole.
        Raises LakeError for a missing table, branch or snapshot, or when DuckDB refuses the view.
        """
        with self._boundary(f"registering {name} on branch {branch} in DuckDB"):
            table = self._load(name)
            snapshot = snapshot_id if snapshot_id is not None else _head(table, name, branch)
            files = [f.path for f in _partition_files(table, snapshot, partitions)]
            create_view(con, as_name or name, _select_sql(con, _snapshot_schema(table, snapshot), files))

    def column_max(self, name: str, branch: str, column: str) -> Any:
        """The largest non-null value of `column` at the head of `branch` (None when there is none),
        read by DuckDB from that one column of the head's files.
        Raises LakeError for a missing table, branch or column.
        """
        with self._boundary(f"reading the largest {column} of {name} on branch {branch}"):
            table = self._load(name)
            head = _head(table, name, branch)
            schema = _snapshot_schema(table, head)
            if column not in schema.column_names:
                raise LakeError(f"lake table {name} has no column {column!r}", "check the column name")
            files = [f.path for f in _partition_files(table, head, None)]
            with scratch() as con:
                con.execute("SET TimeZone = 'UTC'")
                return con.sql(
                    f"SELECT max({_ident(column)}) FROM ({_select_sql(con, schema, files)})"
                ).fetchall()[0][0]

    def table_exists(self, name: str) -> bool:
        """Whether lake table `name` exists. Raises LakeError when the catalog cannot be read."""
        with self._boundary(f"looking up lake table {name}"):
            return self._catalog().table_exists(name)

    def metadata_location(self, name: str) -> str:
        """Where the table's current metadata.json is (a path, or a URI for other storage), as the
        catalog says. Raises LakeError for a missing table."""
        with self._boundary(f"looking up the metadata of {name}"):
            return _local_path(self._load(name).metadata_location)

    def snapshot_files(self, name: str, snapshot_id: int) -> list[str]:
        """Paths of the data files of snapshot `snapshot_id` (see data_files).

        Raises LakeError for a missing table or snapshot, or when a file has delete files.
        """
        with self._boundary(f"listing the files of snapshot {snapshot_id} of {name}"):
            table = self._load(name)
            _snapshot_schema(table, snapshot_id)
            return [f.path for f in _partition_files(table, snapshot_id, None)]

    def snapshot_schema(self, name: str, snapshot_id: int) -> dict[str, str]:
        """Column name -> Iceberg type name ('long', 'timestamptz', ...) of the schema `snapshot_id`
        was written with, in column order. Raises LakeError for a missing table or snapshot."""
        with self._boundary(f"reading the schema of snapshot {snapshot_id} of {name}"):
            schema = _snapshot_schema(self._load(name), snapshot_id)
            return {field.name: str(field.field_type) for field in schema.fields}

    def snapshot_columns(self, name: str, snapshot_id: int) -> list[Column]:
        """(name, DuckDB type) of the columns of the schema `snapshot_id` was written with, in order: what
        a view over its files selects. Raises LakeError for a missing table or snapshot."""
        with self._boundary(f"reading the schema of snapshot {snapshot_id} of {name}"):
            return _columns(_snapshot_schema(self._load(name), snapshot_id))

    def register_files(
        self,
        con: duckdb.DuckDBPyConnection,
        view: str,
        name: str,
        files: Sequence[str],
        *,
        snapshot_id: int | None = None,
    ) -> None:
        """Create (or replace) view `view` over some data `files` of lake table `name` (from
        snapshot_files), with the columns of the schema of `snapshot_id` (the current schema when
        None); no files give an empty view with those columns.
        Raises LakeError for a missing table or snapshot, or when DuckDB refuses the view.
        """
        with self._boundary(f"registering files of {name} in DuckDB as {view}"):
            table = self._load(name)
            schema = _snapshot_schema(table, snapshot_id) if snapshot_id is not None else table.schema()
            create_view(con, view, _select_sql(con, schema, list(files)))

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
                f"merge into {tdef.name} needs a string partition column, {partition_column!r} is not",
                "declare the partition column as a string in engine/ingest/tables.py",
            )
        incoming = _conform(batch, tdef.arrow_schema, tdef.name)
        rows_in = incoming.num_rows
        if rows_in == 0:
            return MergeResult(0, 0, 0, 0, (), None, time.perf_counter() - started)
        with self._boundary(f"merging into {tdef.name} on branch {branch}"):
            table = self._load(tdef.name)
            head = _head(table, tdef.name, branch)
            plan = _plan_merge(table, tdef, head, incoming, key_column, partition_column)
            if not plan.changed:
                return MergeResult(rows_in, 0, 0, plan.unchanged, (), None, time.perf_counter() - started)
            rewritten = _conform(plan.rows, tdef.arrow_schema, tdef.name)
            emptied = sorted(set(plan.changed) - set(pc.unique(rewritten[partition_column]).to_pylist()))
            properties = dict(snapshot_properties or {})
            with warnings.catch_warnings():
                # dynamic_partition_overwrite warns whenever a partition is new, which is expected.
                warnings.filterwarnings("ignore", message=_NO_MATCH_WARNING, category=UserWarning)
                with transaction(table) as tx:
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
        rows = _conform(batch, tdef.arrow_schema, tdef.name)
        if rows.num_rows == 0:
            return None
        with self._boundary(f"appending to {tdef.name} on branch {branch}"):
            table = self._load(tdef.name)
            _head(table, tdef.name, branch)
            with transaction(table) as tx:
                tx.append(rows, snapshot_properties=dict(snapshot_properties or {}), branch=branch)
            return _head(table, tdef.name, branch)

    def write_model(
        self,
        name: str,
        rows: pa.Table,
        *,
        partition_by: str | None = None,
        partitions: Iterable[str] | None = None,
        branch: str = "dev",
        snapshot_properties: dict[str, str] | None = None,
    ) -> int | None:
        """Store a SQL model's output as lake table `name` on `branch`, in one commit.

        Without `partitions` the rows replace the branch's whole content; with them, only those
        values of `partition_by` are replaced (a value without rows is emptied) and rows of other
        values are refused. A missing table is created from the rows' schema (every column
        optional, identity-partitioned by `partition_by`) with `main` and `dev`; columns new in
        the rows are added to the table, columns the rows lack are written as nulls. Makes no
        commit when the stored rows are the same; otherwise commits one `overwrite` snapshot that
        removes the stored files of the replaced values and adds the new ones. Returns the new
        head, else None.
        Raises LakeError for rows outside `partitions`, an incompatible type change, or any lake
        failure.
        """
        with self._boundary(f"writing model {name} on branch {branch}"):
            table = self._model_table(name, rows.schema, partition_by)
            if set(rows.column_names) - set(table.schema().column_names):
                with StagedTransaction(table, autocommit=True).update_schema() as update:
                    update.union_by_name(_optional(rows.schema))
            conformed = _conform(rows, _arrow_schema(table.schema()), name)
            replaced: set[str] | None = None
            if partitions is not None:
                if partition_by is None:
                    raise LakeError(
                        f"model {name} was given partitions to replace but no partition column",
                        "pass partition_by with partitions",
                    )
                values = set(partitions)
                outside = set(pc.unique(conformed[partition_by]).to_pylist()) - values
                if outside:
                    raise LakeError(
                        f"model {name} has rows in {partition_by} values it was not asked to replace: "
                        f"{', '.join(sorted(map(str, outside)))}",
                        "filter the model's output to the partitions being rebuilt",
                    )
                replaced = values
            head = _head(table, name, branch)
            if replaced is not None and _partition_column(table) != partition_by:
                stored = [
                    _StoredFile(path, None, file.record_count, file)
                    for path, file in _planned_files(table, head, _is_in(str(partition_by), sorted(replaced)))
                ]
            else:
                stored = _partition_files(table, head, replaced)
            # Row counts come with the manifests: only equal counts need the rows compared.
            if sum(f.rows for f in stored) == conformed.num_rows and _same_rows(
                table.schema(), [f.path for f in stored], conformed
            ):
                return None
            # One overwrite snapshot that drops exactly the stored files of the replaced partitions
            # and adds the new ones: pyiceberg's overwrite(filter) would plan and evaluate the
            # filter again, and commit a delete and an append snapshot.
            added: list[DataFile] = []
            tx = transaction(table)
            with tx, tx.update_snapshot(dict(snapshot_properties or {}), branch=branch).overwrite() as update:
                for old in stored:
                    update.delete_data_file(old.file)
                if conformed.num_rows:
                    added = list(
                        _dataframe_to_data_files(
                            table_metadata=tx.table_metadata,
                            write_uuid=update.commit_uuid,
                            df=conformed,
                            io=table.io,
                        )
                    )
                    for new in added:
                        update.append_data_file(new)
            written = _head(table, name, branch)
            _remember_files(table, head, written, [f.file for f in stored], added)
            return written

    def set_branch(self, name: str, branch: str, snapshot_id: int) -> None:
        """Point `branch` at `snapshot_id`, an existing snapshot of the table (creating the branch if missing).

        Makes no commit when the branch is there already. Any move is allowed, forward or back:
        callers such as promotion check the lineage first.
        Raises LakeError for an unknown snapshot or when the catalog cannot be written.
        """
        with self._boundary(f"moving branch {branch} of {name}"):
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
            manage_snapshots(table).create_branch(snapshot_id, branch).commit()

    def expire_snapshots(self, name: str, *, older_than: dt.datetime) -> ExpiryResult:
        """expire_unprotected_snapshots (nothing extra protected), then, when any snapshot went,
        delete_orphan_files with the same cutoff: the files only those snapshots used, and files a
        write killed before its commit left behind. Call it from the writer, between runs.
        Raises LakeError as those two do.
        """
        expired = self.expire_unprotected_snapshots(name, older_than=older_than, protect=set())
        if not expired:
            # Files only become unreferenced when snapshots go, so there is nothing to sweep.
            return ExpiryResult(0, 0, 0)
        swept = self.delete_orphan_files(name, older_than=older_than)
        return ExpiryResult(expired, swept.files_deleted, swept.bytes_freed)

    # -- internals -----------------------------------------------------------------------------

    def _catalog(self) -> SqlCatalog:
        with self._catalog_lock:
            if self._catalog_instance is None:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                (self.root / "warehouse").mkdir(mode=0o700, exist_ok=True)
                warehouse = f"file://{self.root}/warehouse"
                database = self.root / "catalog.sqlite"
                moved = database.with_name(MOVED_CATALOG)
                if self.catalog_uri is not None:
                    self._catalog_instance = _open_postgres_catalog(self.catalog_uri, warehouse, database)
                else:
                    if moved.exists() and not database.exists():
                        raise LakeError(
                            f"the catalog of the lake under {self.root} was moved to PostgreSQL ({moved.name})",
                            "set catalog_uri (PHLO_CATALOG_URI) to that database again",
                        )
                    # WAL lets readers in other processes load metadata while the writer commits.
                    with closing(sqlite3.connect(database, timeout=30)) as connection:
                        connection.execute("PRAGMA journal_mode=WAL")
                    self._catalog_instance = _open_catalog(f"sqlite:///{database}", warehouse)
            return self._catalog_instance

    def _model_table(self, name: str, schema: pa.Schema, partition_by: str | None) -> Table:
        """The model's table, created with its branches on first write."""
        catalog = self._catalog()
        try:
            table = self._load_table(name)
        except NoSuchTableError:
            if not schema.names:
                raise LakeError(
                    f"model {name} has no columns to create its lake table from",
                    "the model's SQL must select at least one column",
                ) from None
            catalog.create_namespace_if_not_exists(name.rpartition(".")[0])
            with catalog.create_table_transaction(
                name, schema=_optional(schema), properties=_TABLE_PROPERTIES
            ) as create:
                if partition_by is not None:
                    create.update_spec().add_identity(partition_by).commit()
            table = self._load_table(name)
        _ensure_branches(catalog, table)
        return table

    def _load_table(self, name: str) -> Table:
        """The table from the catalog, or the one pinned for the run. Raises NoSuchTableError."""
        pinned = self._pinned
        if pinned is not None and name in pinned:
            return pinned[name]
        table = self._catalog().load_table(name)
        if pinned is not None:
            pinned[name] = table
        return table

    def _load(self, name: str) -> Table:
        try:
            return self._load_table(name)
        except NoSuchTableError as e:
            raise LakeError(
                f"lake table {name} does not exist in {self.root}",
                "run `phlo-tui run` once to create the lake tables",
            ) from e

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        """Turn any third-party failure into a LakeError saying what failed, where, and what next."""
        try:
            yield
        except LakeError:
            raise
        except CommitFailedException as e:
            if self._pinned is not None:
                self._pinned.clear()
            raise LakeError(
                f"{what} failed: another process changed the table ({e})",
                "make sure only one phlo-tui process writes this home, then run again",
            ) from e
        except OSError as e:
            raise LakeError(
                f"{what} failed: {e}", f"check free disk space and permissions under {self.root}"
            ) from e
        except Exception as e:
            raise LakeError(
                f"{what} failed: {type(e).__name__}: {e}",
                f"the lake under {self.root} may be damaged or written by another version; "
                "see the log for the traceback",
            ) from e

    # -- maintenance ---------------------------------------------------------------------------

    def snapshots(self, name: str) -> list[SnapshotInfo]:
        """Every snapshot the table keeps, whether a branch reaches it or not, newest first.

        Raises LakeError for a missing table.
        """
        with self._boundary(f"listing the snapshots of {name}"):
            table = self._load(name)
            return [
                _snapshot_info(snapshot)
                for snapshot in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
            ]

    def expire_unprotected_snapshots(self, name: str, *, older_than: dt.datetime, protect: set[int]) -> int:
        """Forget the snapshots committed before `older_than`, except branch and tag heads, every
        snapshot between a branch head and the head of another branch it descends from (dev's
        unpromoted work down to main), and the ids in `protect` (snapshots readers were pointed at,
        such as the promotions' `from` and `to`). Returns how many were forgotten.

        Unlike expire_snapshots it deletes no file (delete_orphan_files does, with its own safety
        age) and keeps `protect` whatever their age. One catalog commit that asserts every ref
        still points where it was read.
        Raises LakeError when the table cannot be read or written, or a ref moved meanwhile.
        """
        with self._boundary(f"expiring snapshots of {name}"):
            table = self._load(name)
            refs = table.metadata.refs
            heads = {ref.snapshot_id for ref in refs.values()}
            kept = heads | _unpromoted(table, heads) | protect
            cutoff_ms = int(older_than.timestamp() * 1000)
            expired = [
                s.snapshot_id
                for s in table.metadata.snapshots
                if s.timestamp_ms < cutoff_ms and s.snapshot_id not in kept
            ]
            if not expired:
                return 0
            # ExpireSnapshots.by_ids deep-copies the whole metadata twice per id (seconds for a few
            # hundred); the catalog applies the same update in one go, and checks every ref, where
            # pyiceberg's builder checks none.
            requirements: tuple[TableRequirement, ...] = (
                AssertTableUUID(uuid=table.metadata.table_uuid),
                *(
                    AssertRefSnapshotId(ref=ref_name, snapshot_id=ref.snapshot_id)  # type: ignore[call-arg]
                    for ref_name, ref in refs.items()
                ),
            )
            updates = (RemoveSnapshotsUpdate(snapshot_ids=expired),)  # type: ignore[call-arg]
            table.catalog.commit_table(table, requirements, updates)
            if self._pinned is not None:
                # That commit bypassed the Table object, which is now stale.
                self._pinned.pop(name, None)
            return len(expired)

    def compact(
        self,
        name: str,
        *,
        branch: str = "dev",
        fast_forward: str | None = None,
        snapshot_properties: dict[str, str] | None = None,
    ) -> CompactionResult:
        """Rewrite every partition that has several data files in the head of `branch` into one file
        (an unpartitioned table counts as one partition), in one commit, with the same rows.

        Before the commit, the row count and a checksum of every row (DuckDB's hash of all columns,
        summed) of the whole new head are compared with the old head's; on a mismatch nothing is
        committed (the files written are left for delete_orphan_files) and LakeError is raised.
        With `fast_forward`, that branch moves to the compacted snapshot in the same commit when it
        pointed at the head of `branch` before, so it reads the same rows from fewer files;
        otherwise it stays where it is. Makes no commit when no partition has several files.
        Raises LakeError for a missing table or branch, delete files, a checksum mismatch, or any
        lake failure.
        """
        started = time.perf_counter()
        with self._boundary(f"compacting {name} on branch {branch}"):
            table = self._load(name)
            head = _head(table, name, branch)
            tasks = _planned_tasks(table, table.metadata, head)
            spec = table.spec()
            by_partition: dict[tuple[int, Record], list[FileScanTask]] = {}
            for task in tasks:
                by_partition.setdefault((task.file.spec_id, task.file.partition), []).append(task)
            # A file of an older partition spec cannot be rewritten into its old partition; none of
            # phlo's tables has ever changed its spec.
            crowded = {
                key: group for key, group in by_partition.items() if len(group) > 1 and key[0] == spec.spec_id
            }
            if not crowded:
                return CompactionResult(
                    len(tasks), len(tasks), 0, (), None, None, time.perf_counter() - started
                )
            rewritten = [task for group in crowded.values() for task in group]
            rows = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(rewritten)
            rows = _conform(_plain_strings(rows), _arrow_schema(table.schema()), name)
            # The head's own schema: what readers of the branch see, before and after.
            schema = _snapshot_schema(table, head)
            expected = _fingerprint(schema, [_local_path(task.file.file_path) for task in tasks])
            follower = table.metadata.refs.get(fast_forward) if fast_forward is not None else None
            moves = follower is not None and follower.snapshot_id == head
            properties = {"phlo.maintenance": "compaction", **(snapshot_properties or {})}
            with transaction(table) as tx:
                if spec.is_unpartitioned():
                    tx.overwrite(
                        rows, overwrite_filter=AlwaysTrue(), snapshot_properties=properties, branch=branch
                    )
                else:
                    tx.dynamic_partition_overwrite(rows, properties, branch=branch)
                staged = tx.table_metadata
                compacted = _head_of(staged, name, branch)
                after = _planned_tasks(table, staged, compacted)
                found = _fingerprint(schema, [_local_path(task.file.file_path) for task in after])
                if found != expected:
                    # Raising inside the transaction is what keeps it from committing.
                    raise LakeError(
                        f"compacting {name} on branch {branch} would change its rows: {expected[0]} rows "
                        f"(checksum {expected[1]}) before, {found[0]} rows (checksum {found[1]}) after; "
                        "nothing was committed",
                        "report this with the log; the table is unchanged",
                    )
                if moves and fast_forward is not None:
                    ManageSnapshots(tx).create_branch(compacted, fast_forward).commit()
            partitions = tuple(
                sorted(spec.partition_to_path(partition, table.schema()) for _, partition in crowded)
            )
            return CompactionResult(
                files_before=len(tasks),
                files_after=len(after),
                files_rewritten=len(rewritten),
                partitions=partitions,
                snapshot_id=compacted,
                fast_forwarded=fast_forward if moves else None,
                seconds=time.perf_counter() - started,
            )

    def delete_orphan_files(self, name: str, *, older_than: dt.datetime) -> OrphanSweep:
        """Delete the files under the table's data/ and metadata/ folders (local warehouse only)
        that nothing of the table refers to, and that were last modified before `older_than`.

        Referred to: every remaining snapshot's manifest list, manifests and live data files, the
        current metadata.json and those of its metadata log, and statistics files. The age keeps a
        write still in flight (files written, commit to come) safe. Only Iceberg's kinds of files
        (.parquet, .avro, .metadata.json, .puffin) are considered; nothing else is touched. Call
        it from the writer, after expire_unprotected_snapshots. Refuses to delete anything when a
        file a snapshot refers to is not where its path says (the lake is damaged or the paths
        cannot be matched), since then "unreferenced" cannot be trusted.
        Raises LakeError for a missing table, such a missing file, or a file that cannot be deleted.
        """
        with self._boundary(f"deleting orphan files of {name}"):
            table = self._load(name)
            location = urlparse(table.location())
            if location.scheme != "file":
                return OrphanSweep(0, 0)
            referenced = _referenced_files(table)
            missing = sorted(path for path in referenced if not os.path.exists(path))
            if missing:
                raise LakeError(
                    f"lake table {name} refers to {len(missing)} file(s) that do not exist, such as "
                    f"{missing[0]}; no orphan file was deleted",
                    "restore the files from a backup, or rebuild the table with a backfill",
                )
            kept = referenced | _metadata_files(table)
            cutoff = older_than.timestamp()
            deleted, freed = 0, 0
            for path in _iceberg_files(Path(location.path)):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                if stat.st_mtime < cutoff and os.path.realpath(path) not in kept:
                    path.unlink(missing_ok=True)
                    deleted, freed = deleted + 1, freed + stat.st_size
            return OrphanSweep(deleted, freed)

    def stored_files(self, name: str) -> tuple[int, int]:
        """(files, bytes) of Iceberg files under the table's data/ and metadata/ folders, referenced
        or not; (0, 0) for storage other than local files. Raises LakeError for a missing table."""
        with self._boundary(f"measuring the files of {name}"):
            location = urlparse(self._load(name).location())
            if location.scheme != "file":
                return 0, 0
            files, size = 0, 0
            for path in _iceberg_files(Path(location.path)):
                try:
                    size += path.stat().st_size
                except FileNotFoundError:
                    continue
                files += 1
            return files, size


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


# -- maintenance helpers ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompactionResult:
    """What one compaction did: data files of the branch head before and after, files rewritten,
    the partitions rewritten ('' for an unpartitioned table), the new head (None when nothing was
    committed) and the branch fast-forwarded along with it, if any."""

    files_before: int
    files_after: int
    files_rewritten: int
    partitions: tuple[str, ...]
    snapshot_id: int | None
    fast_forwarded: str | None
    seconds: float


@dataclass(frozen=True)
class OrphanSweep:
    """Files nothing referred to any more, deleted, and their bytes."""

    files_deleted: int
    bytes_freed: int


_ICEBERG_SUFFIXES = (".parquet", ".avro", ".metadata.json", ".puffin")


def _snapshot_info(snapshot: Snapshot) -> SnapshotInfo:
    return SnapshotInfo(
        snapshot_id=snapshot.snapshot_id,
        parent_id=snapshot.parent_snapshot_id,
        timestamp_ms=snapshot.timestamp_ms,
        operation=snapshot.summary.operation.value if snapshot.summary else "",
        summary=dict(snapshot.summary.additional_properties) if snapshot.summary else {},
    )


def _head_of(metadata: TableMetadata, name: str, branch: str) -> int:
    """Like _head, on metadata not (yet) committed."""
    snapshot = metadata.snapshot_by_name(branch)
    if snapshot is None:
        raise LakeError(f"branch {branch} of lake table {name} vanished during a write", "run again")
    return snapshot.snapshot_id


def _metadata_files(table: Table) -> set[str]:
    """Real paths of the current metadata.json, those of its metadata log, and statistics files."""
    paths = [table.metadata_location]
    paths += [entry.metadata_file for entry in table.metadata.metadata_log]
    paths += [stats.statistics_path for stats in table.metadata.statistics]
    paths += [stats.statistics_path for stats in table.metadata.partition_statistics]
    return {os.path.realpath(_local_path(path)) for path in paths}


def _iceberg_files(location: Path) -> Iterator[Path]:
    """The Iceberg files under the data/ and metadata/ folders of a table's local location."""
    for folder in ("data", "metadata"):
        for path in sorted((location / folder).rglob("*")):
            if path.name.endswith(_ICEBERG_SUFFIXES) and path.is_file():
                yield path
