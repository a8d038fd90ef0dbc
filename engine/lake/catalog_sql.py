"""The lake's catalog in PostgreSQL (catalog_uri): pyiceberg's SqlCatalog, parsing each metadata.json once.

pyiceberg reads and parses a table's metadata.json on every `load_table` (and once more inside every
commit). A metadata.json is written once under a unique name and never changed, so the parsed metadata
of a location is valid for as long as the catalog row points at that location (checked on every load).
A catalog in a SQLite file is engine.lake.sqlite_catalog's, which does the same without SQLAlchemy.
"""

from __future__ import annotations

import threading

from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableRequirement, TableUpdate
from pyiceberg.typedef import Identifier

from engine.lake.catalog import stage_commit


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
        self._remember_at(table.name(), response.metadata_location, response.metadata)
        return response

    _update_and_stage_table = stage_commit

    def _remember(self, table: Table) -> Table:
        self._remember_at(table.name(), table.metadata_location, table.metadata)
        return table

    def _remember_at(self, identifier: Identifier, location: str, metadata: TableMetadata) -> None:
        namespace = self.namespace_to_string(self.namespace_from(identifier))
        with self._parsed_lock:
            self._parsed[(namespace, self.table_name_from(identifier))] = (location, metadata)
