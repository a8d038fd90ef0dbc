"""The lake's SQLite catalog on the standard library's sqlite3: pyiceberg's SqlCatalog without SQLAlchemy.

A fresh `phlo-tui run` spent a third of a second importing SQLAlchemy and more in its ORM for some ninety
catalog calls. This catalog keeps Iceberg's JDBC catalog schema (the tables `iceberg_tables` and
`iceberg_namespace_properties`, created with the very DDL SQLAlchemy emits for pyiceberg) and its
optimistic concurrency (a commit updates the table's row only where it still holds the metadata location
the commit started from, else CommitFailedException), so pyiceberg's SqlCatalog, DuckDB and Trino read
the same file and a process of either kind can write it alongside the other (docs/architecture.md,
"The lake's catalog").

The calls a run makes (load, create, commit, namespaces) are answered here; the rare ones (rename, drop,
listings, namespace property updates, views) are handed to pyiceberg's own SqlCatalog on the same file,
opened on first use.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pyiceberg.catalog import Catalog, MetastoreCatalog, PropertiesUpdateSummary
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.io import load_file_io
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import CommitTableResponse, Table, TableProperties
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder
from pyiceberg.table.update import TableRequirement, TableUpdate
from pyiceberg.typedef import EMPTY_DICT, Identifier, Properties, TableVersion

from engine.lake.catalog import stage_commit

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.view import View
    from pyiceberg.view.metadata import ViewVersion

CATALOG_DDL = (
    "CREATE TABLE IF NOT EXISTS iceberg_tables (\n"
    "\tcatalog_name VARCHAR(255) NOT NULL, \n"
    "\ttable_namespace VARCHAR(255) NOT NULL, \n"
    "\ttable_name VARCHAR(255) NOT NULL, \n"
    "\tmetadata_location VARCHAR(1000), \n"
    "\tprevious_metadata_location VARCHAR(1000), \n"
    "\ticeberg_type VARCHAR(5), \n"
    "\tPRIMARY KEY (catalog_name, table_namespace, table_name)\n"
    ")",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (\n"
    "\tcatalog_name VARCHAR(255) NOT NULL, \n"
    "\tnamespace VARCHAR(255) NOT NULL, \n"
    "\tproperty_key VARCHAR(255) NOT NULL, \n"
    "\tproperty_value VARCHAR(1000) NOT NULL, \n"
    "\tPRIMARY KEY (catalog_name, namespace, property_key)\n"
    ")",
)
"""pyiceberg 0.12's catalog tables (its v1 schema) as SQLAlchemy creates them in SQLite, character for
character: SQLite keeps a table's CREATE text (without IF NOT EXISTS) in sqlite_master."""

_TABLE_TYPE = "TABLE"
_MINIMAL_NAMESPACE_PROPERTIES = {"exists": "true"}


class SqliteCatalog(MetastoreCatalog):
    """pyiceberg's SqlCatalog (v1 schema, or v0 on a catalog created by an older pyiceberg) on the SQLite
    file `database`, through one sqlite3 connection shared by the process's threads; parses each
    metadata.json once (its location is read from the catalog on every load, so another process's
    commit is seen at once: a metadata.json is written once under a unique name and never changed)."""

    def __init__(self, name: str, database: Path, warehouse: str) -> None:
        super().__init__(name, uri=f"sqlite:///{database}", warehouse=warehouse)
        self._database = database
        self._lock = threading.RLock()
        # Autocommit: every statement is its own transaction unless `_transaction` opens one.
        self._connection = sqlite3.connect(
            database, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._parsed: dict[tuple[str, str], tuple[str, TableMetadata]] = {}
        self._sql_catalog: SqlCatalog | None = None
        present = {row[0] for row in self._query("select name from sqlite_master where type = 'table'", ())}
        if not {"iceberg_tables", "iceberg_namespace_properties"} <= present:
            # Another process may create them at the same moment: IF NOT EXISTS, in one transaction.
            with self._transaction() as cursor:
                for statement in CATALOG_DDL:
                    cursor.execute(statement)
        columns = {row[1] for row in self._query("PRAGMA table_info(iceberg_tables)", ())}
        # A catalog created by pyiceberg before 0.10 lacks the column; SqlCatalog leaves it so (v0).
        self._typed = "iceberg_type" in columns

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def _query(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def _table_filter(self) -> str:
        # Rows of views (written by iceberg-java or iceberg-rust) are no tables; v0 has no types.
        return " and (iceberg_type = 'TABLE' or iceberg_type is null)" if self._typed else ""

    @staticmethod
    def _split(identifier: str | Identifier) -> tuple[str, str]:
        namespace = Catalog.namespace_to_string(Catalog.namespace_from(identifier))
        return namespace, Catalog.table_name_from(identifier)

    def _insert_table(self, namespace: str, name: str, metadata_location: str) -> None:
        row: dict[str, Any] = {
            "catalog_name": self.name,
            "table_namespace": namespace,
            "table_name": name,
            "metadata_location": metadata_location,
            "previous_metadata_location": None,
        }
        if self._typed:
            row["iceberg_type"] = _TABLE_TYPE
        try:
            with self._transaction() as cursor:
                cursor.execute(
                    f"insert into iceberg_tables ({', '.join(row)}) values ({', '.join('?' * len(row))})",
                    tuple(row.values()),
                )
        except sqlite3.IntegrityError as e:
            raise TableAlreadyExistsError(f"Table {namespace}.{name} already exists") from e

    # -- tables ---------------------------------------------------------------------------------

    def load_table(self, identifier: str | Identifier) -> Table:
        namespace, name = self._split(identifier)
        rows = self._query(
            "select metadata_location from iceberg_tables "
            f"where catalog_name = ? and table_namespace = ? and table_name = ?{self._table_filter()}",
            (self.name, namespace, name),
        )
        if not rows:
            raise NoSuchTableError(f"Table does not exist: {namespace}.{name}")
        location = rows[0][0]
        if not location:
            raise NoSuchTableError("Table property metadata_location is missing")
        with self._lock:
            cached = self._parsed.get((namespace, name))
        if cached is not None and cached[0] == location:
            metadata = cached[1]
        else:
            io = load_file_io(properties=self.properties, location=location)
            metadata = FromInputFile.table_metadata(io.new_input(location))
            self._remember(namespace, name, location, metadata)
        return Table(
            identifier=(*Catalog.identifier_to_tuple(namespace), name),
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(metadata.properties, location),
            catalog=self,
        )

    def _remember(self, namespace: str, name: str, location: str, metadata: TableMetadata) -> None:
        with self._lock:
            self._parsed[(namespace, name)] = (location, metadata)

    def create_table(
        self,
        identifier: str | Identifier,
        schema: Schema | pa.Schema,
        location: str | None = None,
        partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC,
        sort_order: SortOrder = UNSORTED_SORT_ORDER,
        properties: Properties = EMPTY_DICT,
    ) -> Table:
        """SqlCatalog.create_table: the first metadata.json, then the catalog row; unlike SqlCatalog it
        leaves no unreferenced metadata.json behind when the table exists (the lake ensures its tables
        on every run)."""
        version = int(properties.get(TableProperties.FORMAT_VERSION, TableProperties.DEFAULT_FORMAT_VERSION))
        iceberg_schema = self._convert_schema_if_needed(schema, cast(TableVersion, version))
        namespace, name = self._split(identifier)
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace does not exist: {Catalog.namespace_from(identifier)}")
        if self._query(
            "select 1 from iceberg_tables where catalog_name = ? and table_namespace = ? and table_name = ?",
            (self.name, namespace, name),
        ):
            raise TableAlreadyExistsError(f"Table {namespace}.{name} already exists")
        location = self._resolve_table_location(location, namespace, name)
        provider = load_location_provider(table_location=location, table_properties=properties)
        metadata_location = provider.new_table_metadata_file_location()
        metadata = new_table_metadata(
            location=location,
            schema=iceberg_schema,
            partition_spec=partition_spec,
            sort_order=sort_order,
            properties=properties,
        )
        io = load_file_io(self.properties, metadata_location)
        self._write_metadata(metadata, io, metadata_location)
        try:
            self._insert_table(namespace, name, metadata_location)
        except TableAlreadyExistsError:
            io.delete(metadata_location)  # another process created it meanwhile: ours is nobody's
            raise
        return self.load_table(identifier)

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        """SqlCatalog.commit_table: validate the requirements against the table as the catalog has it,
        write the new metadata.json, then move the row only if it still points where it did."""
        namespace, name = self._split(table.name())
        try:
            current: Table | None = self.load_table(table.name())
        except NoSuchTableError:
            current = None
        staged = self._update_and_stage_table(current, table.name(), requirements, updates)
        if current is not None and staged.metadata == current.metadata:
            return CommitTableResponse(metadata=current.metadata, metadata_location=current.metadata_location)  # type: ignore[call-arg]
        self._write_metadata(staged.metadata, staged.io, staged.metadata_location)
        if current is None:
            self._insert_table(namespace, name, staged.metadata_location)
        else:
            with self._transaction() as cursor:
                moved = cursor.execute(
                    "update iceberg_tables set metadata_location = ?, previous_metadata_location = ? "
                    "where catalog_name = ? and table_namespace = ? and table_name = ? and metadata_location = ?",
                    (
                        staged.metadata_location,
                        current.metadata_location,
                        self.name,
                        namespace,
                        name,
                        current.metadata_location,
                    ),
                ).rowcount
            if moved < 1:
                raise CommitFailedException(f"Table has been updated by another process: {namespace}.{name}")
        self._remember(namespace, name, staged.metadata_location, staged.metadata)
        return CommitTableResponse(metadata=staged.metadata, metadata_location=staged.metadata_location)  # type: ignore[call-arg]

    _update_and_stage_table = stage_commit

    # -- namespaces -----------------------------------------------------------------------------

    def namespace_exists(self, namespace: str | Identifier) -> bool:
        """A namespace holds a table, or has properties, itself or in a namespace below it."""
        text = Catalog.namespace_to_string(Catalog.identifier_to_tuple(namespace), NoSuchNamespaceError)
        below = text.replace("!", "!!").replace("_", "!_").replace("%", "!%") + ".%"
        return any(
            self._query(
                f"select 1 from {table} where catalog_name = ? and ({column} = ? or {column} like ? escape '!') "
                "limit 1",
                (self.name, text, below),
            )
            for table, column in (
                ("iceberg_tables", "table_namespace"),
                ("iceberg_namespace_properties", "namespace"),
            )
        )

    def create_namespace(self, namespace: str | Identifier, properties: Properties = EMPTY_DICT) -> None:
        """Raises NamespaceAlreadyExistsError when it exists, also when another process made it meanwhile."""
        if self.namespace_exists(namespace):
            raise NamespaceAlreadyExistsError(f"Namespace {namespace} already exists")
        text = Catalog.namespace_to_string(namespace, NoSuchNamespaceError)
        try:
            with self._transaction() as cursor:
                cursor.executemany(
                    "insert into iceberg_namespace_properties "
                    "(catalog_name, namespace, property_key, property_value) values (?, ?, ?, ?)",
                    [
                        (self.name, text, k, v)
                        for k, v in (properties or _MINIMAL_NAMESPACE_PROPERTIES).items()
                    ],
                )
        except sqlite3.IntegrityError as e:
            raise NamespaceAlreadyExistsError(f"Namespace {namespace} already exists") from e

    def load_namespace_properties(self, namespace: str | Identifier) -> Properties:
        text = Catalog.namespace_to_string(namespace)
        if not self.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"Namespace {text} does not exists")
        rows = self._query(
            "select property_key, property_value from iceberg_namespace_properties "
            "where catalog_name = ? and namespace = ?",
            (self.name, text),
        )
        return {key: value for key, value in rows}

    # -- the rest, by pyiceberg's SqlCatalog on the same file -----------------------------------

    def _sql(self) -> SqlCatalog:
        from pyiceberg.catalog.sql import SqlCatalog

        with self._lock:
            if self._sql_catalog is None:
                self._sql_catalog = SqlCatalog(self.name, **self.properties)
            return self._sql_catalog

    def register_table(
        self, identifier: str | Identifier, metadata_location: str, overwrite: bool = False
    ) -> Table:
        return self._sql().register_table(identifier, metadata_location, overwrite)

    def drop_table(self, identifier: str | Identifier) -> None:
        self._sql().drop_table(identifier)

    def rename_table(self, from_identifier: str | Identifier, to_identifier: str | Identifier) -> Table:
        self._sql().rename_table(from_identifier, to_identifier)
        return self.load_table(to_identifier)

    def drop_namespace(self, namespace: str | Identifier) -> None:
        self._sql().drop_namespace(namespace)

    def list_tables(self, namespace: str | Identifier) -> list[Identifier]:
        return self._sql().list_tables(namespace)

    def list_namespaces(self, namespace: str | Identifier = ()) -> list[Identifier]:
        return self._sql().list_namespaces(namespace)

    def update_namespace_properties(
        self, namespace: str | Identifier, removals: set[str] | None = None, updates: Properties = EMPTY_DICT
    ) -> PropertiesUpdateSummary:
        return self._sql().update_namespace_properties(namespace, removals, updates)

    def list_views(self, namespace: str | Identifier) -> list[Identifier]:
        return self._sql().list_views(namespace)

    def load_view(self, identifier: str | Identifier) -> View:
        return self._sql().load_view(identifier)

    def view_exists(self, identifier: str | Identifier) -> bool:
        return self._sql().view_exists(identifier)

    def register_view(self, identifier: str | Identifier, metadata_location: str) -> View:
        return self._sql().register_view(identifier, metadata_location)

    def drop_view(self, identifier: str | Identifier) -> None:
        self._sql().drop_view(identifier)

    def create_view(
        self,
        identifier: str | Identifier,
        schema: Schema | pa.Schema,
        view_version: ViewVersion,
        location: str | None = None,
        properties: Properties = EMPTY_DICT,
    ) -> View:
        return self._sql().create_view(identifier, schema, view_version, location, properties)

    def close(self) -> None:
        with self._lock:
            if self._sql_catalog is not None:
                self._sql_catalog.close()
            self._connection.close()
