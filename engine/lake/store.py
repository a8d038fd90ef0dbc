"""The Iceberg lake: tables with `main` and `dev` branches, partition-wise merges, and DuckDB views.

`Lake` writes (tables, merges, models, refs); it inherits its reads from engine/lake/reads.py,
its housekeeping from engine/lake/housekeeping.py and its catalog access from engine/lake/access.py."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from engine.errors import LakeError
from engine.ingest.tables import TableDef
from engine.lake.catalog import StagedTransaction, _head, manage_snapshots, overwrite, transaction
from engine.lake.conform import (
    _arrow_schema,
    _check_declaration,
    _conform,
)
from engine.lake.evolve import add_declared_columns
from engine.lake.files import (
    _is_in,
    _optional,
    _partition_column,
    _partition_files,
    _planned_files,
    _remember_files,
    _select_sql,
    _snapshot_schema,
    _StoredFile,
)
from engine.lake.housekeeping import LakeHousekeeping
from engine.lake.merge import (
    _plan_merge,
    _same_rows,
)
from engine.lake.opening import (
    _ensure_branches,
)
from engine.lake.reads import LakeReads
from engine.lake.views import create_view

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


class Lake(LakeReads, LakeHousekeeping):
    """The Iceberg warehouse under PHLO_HOME/lake: warehouse/ (file://) and its SQL catalog, the file
    catalog.sqlite or, with `catalog_uri`, a PostgreSQL database (engine.lake.catalog_uri)."""

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
            except Exception:
                # pyiceberg's SQL catalog (PostgreSQL) checks, then inserts: a process that loses
                # that race gets SQLAlchemy's unique-key error instead of NamespaceAlreadyExistsError.
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
        time_keyed: bool = False,
    ) -> MergeResult:
        """Upsert `batch` by `tdef.key` into `branch`, rewriting only the partitions that change.

        A batch row replaces the stored row with the same key when any column other than the
        bookkeeping columns differs; the last batch row per key wins. A stored row whose key arrives
        in another partition is removed from its old partition in the same commit. When nothing
        changes no snapshot is committed (snapshot_id None).
        `time_keyed`: every batch key holds its row's local time (an import's ids): a stored row with
        the key can only lie in the month before or after the batch row's (docs/imports.md), so only
        those partitions are searched for moved keys, not every other one.
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
            plan = _plan_merge(
                table, tdef, head, incoming, key_column, partition_column, time_keyed=time_keyed
            )
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
            with tx, overwrite(tx, branch, dict(snapshot_properties or {})) as update:
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

    # -- internals -----------------------------------------------------------------------------

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
