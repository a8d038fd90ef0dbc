"""The lake's Iceberg catalog and transactions, minus pyiceberg 0.12's repeated metadata reads and copies.

pyiceberg reads and parses a table's metadata.json on every `load_table` (and once more inside
every commit), and a transaction deep-copies the whole table metadata each time one of its steps
looks at it (twenty-odd times per commit). With hourly runs the metadata holds hundreds of
snapshots, and these copies were most of the time of an incremental layer build.

Both caches are safe by construction: a metadata.json is written once under a unique name and
never changed, so the parsed metadata of a location is valid for as long as the catalog row points
at that location (checked on every load); and pyiceberg's metadata models are frozen and replaced,
never changed in place, so a transaction can hand the same staged metadata to every step until
another update is staged.
"""

from __future__ import annotations

import threading

from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.table import CommitTableResponse, Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableRequirement, TableUpdate, update_table_metadata
from pyiceberg.table.update.snapshot import ManageSnapshots

from engine.errors import LakeError


class CachingSqlCatalog(SqlCatalog):
    """A SqlCatalog that parses each metadata.json once: the catalog row is still read on every
    load, so a commit by another process is seen at once."""

    def __init__(self, name: str, **properties: str) -> None:
        super().__init__(name, **properties)
        self._parsed: dict[tuple[str, str], tuple[str, TableMetadata]] = {}
        self._parsed_lock = threading.Lock()

    def _convert_orm_to_iceberg(self, orm_table: IcebergTables) -> Table:
        key = (str(orm_table.table_namespace), str(orm_table.table_name))
        location = orm_table.metadata_location
        with self._parsed_lock:
            cached = self._parsed.get(key)
        if cached is None or cached[0] != location or not location:
            return self._remember(super()._convert_orm_to_iceberg(orm_table))
        return Table(
            identifier=(*self.identifier_to_tuple(key[0]), key[1]),
            metadata=cached[1],
            metadata_location=location,
            io=self._load_file_io(cached[1].properties, location),
            catalog=self,
        )

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        response = super().commit_table(table, requirements, updates)
        namespace = self.namespace_to_string(self.namespace_from(table.name()))
        with self._parsed_lock:
            self._parsed[(namespace, self.table_name_from(table.name()))] = (
                response.metadata_location,
                response.metadata,
            )
        return response

    def _remember(self, table: Table) -> Table:
        namespace = self.namespace_to_string(self.namespace_from(table.name()))
        with self._parsed_lock:
            self._parsed[(namespace, self.table_name_from(table.name()))] = (
                table.metadata_location,
                table.metadata,
            )
        return table


class StagedTransaction(Transaction):
    """A Transaction that computes its staged metadata once per staged update, not once per look."""

    _staged: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        staged = self._staged
        if staged is None or staged[0] is not base or staged[1] is not updates:
            staged = (base, updates, update_table_metadata(base, updates))
            self._staged = staged
        return staged[2]


def transaction(table: Table) -> StagedTransaction:
    """A transaction on `table`, committed when its `with` block ends without an exception."""
    return StagedTransaction(table)


def manage_snapshots(table: Table) -> ManageSnapshots:
    """table.manage_snapshots() on a StagedTransaction (committed by `.commit()`)."""
    return ManageSnapshots(transaction=StagedTransaction(table, autocommit=True))


def _head(table: Table, name: str, branch: str) -> int:
    """The head snapshot id of `branch`; a missing branch is an error, never created implicitly."""
    snapshot = table.metadata.snapshot_by_name(branch)
    if snapshot is None:
        raise LakeError(
            f"branch {branch} of lake table {name} does not exist",
            "run `phlo-tui run` once so the lake tables get their main and dev branches",
        )
    return snapshot.snapshot_id


def _head_of(metadata: TableMetadata, name: str, branch: str) -> int:
    """Like _head, on metadata not (yet) committed."""
    snapshot = metadata.snapshot_by_name(branch)
    if snapshot is None:
        raise LakeError(f"branch {branch} of lake table {name} vanished during a write", "run again")
    return snapshot.snapshot_id
