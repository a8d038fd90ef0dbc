"""Opening the lake's catalog: the SQLite file in the home, or PostgreSQL (catalog_uri), adopting a file
catalog into an empty database once; and every table's dev and main refs made sure of."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from engine.errors import LakeError
from engine.lake.catalog import manage_snapshots, transaction
from engine.lake.catalog_uri import CATALOG_NAME, CATALOG_TABLES, redacted, scrub, sqlalchemy_url
from engine.lake.conform import (
    _arrow_schema,
)
from engine.lake.sqlite_catalog import SqliteCatalog

if TYPE_CHECKING:
    from engine.lake.catalog_sql import CachingSqlCatalog


def _ensure_branches(catalog: Catalog, table: Table) -> None:
    """Give `main` a snapshot and create `dev` at it, unless present; a lost race counts as done."""
    name = ".".join(table.name())
    if table.metadata.snapshot_by_name("main") is None:
        try:
            # pyiceberg commits a snapshot even for an empty append: that is main's root.
            with transaction(table) as tx:
                tx.append(_arrow_schema(table.schema()).empty_table(), branch="main")
        except CommitFailedException:
            table = catalog.load_table(name)
    main = table.metadata.snapshot_by_name("main")
    if main is None:
        raise LakeError(
            f"branch main of {name} has no snapshot after creating one",
            "check the catalog under the lake directory; another tool may be writing it",
        )
    if "dev" not in table.metadata.refs:
        try:
            manage_snapshots(table).create_branch(main.snapshot_id, "dev").commit()
        except CommitFailedException:
            if "dev" not in catalog.load_table(name).metadata.refs:
                raise


def _open_catalog(database: Path, warehouse: str) -> SqliteCatalog:
    """The SQLite catalog file `database` (created when missing), read and written without SQLAlchemy."""
    return SqliteCatalog(CATALOG_NAME, database, warehouse)


def _open_sql_catalog(uri: str, warehouse: str) -> CachingSqlCatalog:
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    from engine.lake.catalog_sql import CachingSqlCatalog

    try:
        return CachingSqlCatalog(CATALOG_NAME, uri=uri, warehouse=warehouse)
    except (OperationalError, IntegrityError, ProgrammingError):
        # Another process created the catalog's tables at the same moment ("table iceberg_tables
        # already exists"); once it has, opening again finds them.
        time.sleep(0.2)
        return CachingSqlCatalog(CATALOG_NAME, uri=uri, warehouse=warehouse)


MOVED_CATALOG = "catalog.sqlite.moved-to-postgres"
"""What the catalog file of a home becomes once its rows are in the PostgreSQL of catalog_uri."""


def _open_postgres_catalog(uri: str, warehouse: str, database: Path) -> CachingSqlCatalog:
    """The SQL catalog in the PostgreSQL database of `uri`, refused in one line (without the password)
    when the database cannot be reached or already holds another lake's tables under our catalog name.

    A home whose catalog is still the file `database` (catalog_uri set on an existing home, or a home
    restored from a backup) moves into an empty PostgreSQL catalog: its rows are copied in one
    transaction, then the file is renamed MOVED_CATALOG so it cannot be opened stale."""
    from sqlalchemy.exc import SQLAlchemyError

    shown = redacted(uri)
    try:
        catalog = _open_sql_catalog(sqlalchemy_url(uri), warehouse)
        if database.exists():
            _adopt_file_catalog(catalog, database)
        with catalog.engine.connect() as connection:
            foreign = connection.exec_driver_sql(
                "select table_namespace || '.' || table_name, metadata_location from iceberg_tables "
                "where catalog_name = %(name)s and metadata_location is not null "
                "and left(metadata_location, length(%(ours)s)) <> %(ours)s limit 1",
                {"name": CATALOG_NAME, "ours": warehouse + "/"},
            ).fetchone()
    except SQLAlchemyError as e:
        reason = scrub(str(getattr(e, "orig", None) or e).strip().splitlines()[0], uri)
        raise LakeError(
            f"cannot open the lake's catalog in PostgreSQL at {shown}: {reason}",
            "check catalog_uri (PHLO_CATALOG_URI) and that the database server runs and accepts this user",
        ) from None
    if foreign is not None:
        raise LakeError(
            f"the catalog at {shown} already holds {foreign[0]} of another lake ({foreign[1]})",
            f"give each phlo home its own database, or point catalog_uri at the one this home's warehouse "
            f"({warehouse}) belongs to",
        )
    return catalog


def _adopt_file_catalog(catalog: CachingSqlCatalog, database: Path) -> None:
    """Copy the rows of the SQLite catalog `database` into `catalog` when it has none of ours, then
    rename the file; leave both alone when it already has rows (the foreign-rows check follows)."""
    with closing(sqlite3.connect(database, timeout=30)) as source:
        rows = {
            name: source.execute(
                f"select {', '.join(columns)} from {name} where catalog_name = ?", (CATALOG_NAME,)
            ).fetchall()
            for name, columns in CATALOG_TABLES.items()
        }
    with catalog.engine.begin() as connection:
        held: int = connection.exec_driver_sql(
            "select count(*) from iceberg_tables where catalog_name = %(name)s", {"name": CATALOG_NAME}
        ).scalar_one()
        if held:
            return
        for name, columns in CATALOG_TABLES.items():
            if rows[name]:
                connection.exec_driver_sql(
                    f"insert into {name} ({', '.join(columns)}) "
                    f"values ({', '.join(f'%({c})s' for c in columns)})",
                    [dict(zip(columns, row, strict=True)) for row in rows[name]],
                )
    with suppress(FileNotFoundError):  # another process adopted it at the same moment
        database.rename(database.with_name(MOVED_CATALOG))
