"""The lake's Iceberg transactions, minus pyiceberg 0.12's repeated metadata copies (its catalogs, which
parse each metadata.json once: engine.lake.sqlite_catalog and engine.lake.catalog_sql).

A transaction deep-copies the whole table metadata each time one of its steps
looks at it (twenty-odd times per commit). With hourly runs the metadata holds hundreds of
snapshots, and these copies were most of the time of an incremental layer build.

The cache is safe by construction: pyiceberg's metadata models are frozen and replaced,
never changed in place, so a transaction can hand the same staged metadata to every step until
another update is staged.
"""

from __future__ import annotations

from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableUpdate, update_table_metadata
from pyiceberg.table.update.snapshot import ManageSnapshots

from engine.errors import LakeError


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
