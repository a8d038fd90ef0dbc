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

from datetime import datetime

from pyiceberg.catalog import MetastoreCatalog
from pyiceberg.manifest import ManifestFile
from pyiceberg.table import StagedTable, Table, Transaction
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update import (
    TableRequirement,
    TableUpdate,
    _apply_table_update,
    _TableMetadataUpdateContext,
    _update_table_metadata_log,
)
from pyiceberg.table.update.snapshot import ManageSnapshots, _OverwriteFiles
from pyiceberg.typedef import Identifier
from pyiceberg.utils.datetime import datetime_to_millis

from engine.errors import LakeError


class StagedTransaction(Transaction):
    """A Transaction that computes its staged metadata once per staged update, not once per look."""

    _staged: tuple[TableMetadata, tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates = self._table.metadata, self._updates
        staged = self._staged
        if staged is None or staged[0] is not base or staged[1] is not updates:
            staged = (base, updates, updated_metadata(base, updates))
            self._staged = staged
        return staged[2]


def updated_metadata(
    base: TableMetadata, updates: tuple[TableUpdate, ...], metadata_location: str | None = None
) -> TableMetadata:
    """pyiceberg 0.12's update_table_metadata(base, updates, metadata_location=...) without its last step, a
    deep copy of the whole result (a dozen milliseconds with hundreds of snapshots, twice per commit):
    each update builds new lists and dicts for what it changes and shares the rest, which nothing changes
    in place. tests/test_lake_commits.py checks the result equals pyiceberg's."""
    context = _TableMetadataUpdateContext()
    metadata = base
    for update in updates:
        metadata = _apply_table_update(update, metadata, context)
    if context.has_changes():
        if metadata_location:
            metadata = _update_table_metadata_log(metadata, metadata_location, base.last_updated_ms)
        if base.last_updated_ms == metadata.last_updated_ms:
            now = datetime_to_millis(datetime.now().astimezone())
            metadata = metadata.model_copy(update={"last_updated_ms": now})
    metadata.spec().check_compatible(metadata.schema())
    metadata.sort_order().check_compatible(metadata.schema())
    return metadata


def stage_commit(
    catalog: MetastoreCatalog,
    current_table: Table | None,
    table_identifier: Identifier,
    requirements: tuple[TableRequirement, ...],
    updates: tuple[TableUpdate, ...],
) -> StagedTable:
    """MetastoreCatalog._update_and_stage_table with updated_metadata for an existing table (a new one is
    validated by pyiceberg's own, as before). The catalogs (engine.lake.sqlite_catalog, catalog_sql) take
    it as that method, so its parameters are pyiceberg's."""
    if current_table is None:
        return MetastoreCatalog._update_and_stage_table(
            catalog, current_table, table_identifier, requirements, updates
        )
    for requirement in requirements:
        requirement.validate(current_table.metadata)
    metadata = updated_metadata(current_table.metadata, updates, current_table.metadata_location)
    version = MetastoreCatalog._parse_metadata_version(current_table.metadata_location) + 1
    location = load_location_provider(
        metadata.location, metadata.properties
    ).new_table_metadata_file_location(version)
    return StagedTable(
        identifier=table_identifier,
        metadata=metadata,
        metadata_location=location,
        io=catalog._load_file_io(properties=metadata.properties, location=location),
        catalog=catalog,
    )


def transaction(table: Table) -> StagedTransaction:
    """A transaction on `table`, committed when its `with` block ends without an exception."""
    return StagedTransaction(table)


class LiveOverwrite(_OverwriteFiles):
    """pyiceberg's overwrite snapshot, listing only the manifests that still hold a live file.

    A snapshot's manifest list holds the manifests of its live files, plus the entries of the files
    it removed itself (status DELETED). pyiceberg 0.12's overwrite carries every manifest of the
    parent it does not rewrite, so each earlier commit's manifest of removed files stayed in every
    later snapshot: a model table rewritten hourly listed a manifest more per run, and a fresh
    process read them all to plan each write (some 50 after two days; thousands after months).
    Iceberg's Java library, and pyiceberg's own fast append, drop a manifest with no added and no
    existing file; so does this. No reader loses anything: every reader skips DELETED entries, and
    the snapshot that removed a file still lists its entry."""

    def _existing_manifests(self) -> list[ManifestFile]:
        return [m for m in super()._existing_manifests() if m.has_added_files() or m.has_existing_files()]


def overwrite(tx: Transaction, branch: str, properties: dict[str, str]) -> LiveOverwrite:
    """`tx.update_snapshot(properties, branch=branch).overwrite()`, as a `LiveOverwrite`."""
    return LiveOverwrite(
        operation=Operation.OVERWRITE
        if tx.table_metadata.snapshot_by_name(branch) is not None
        else Operation.APPEND,
        transaction=tx,
        io=tx._table.io,
        branch=branch,
        snapshot_properties=properties,
    )


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
