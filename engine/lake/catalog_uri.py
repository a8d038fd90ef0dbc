"""Where the lake's Iceberg catalog lives: the SQLite file under the home, or a PostgreSQL database.

The SQL catalog keeps one row per table (`iceberg_tables`: catalog name, namespace, name, current
metadata.json) in the table layout of Iceberg's JDBC catalog, so Trino and Spark read the same rows
through their JDBC catalog (docs/scale-out.md). The setting `catalog_uri` (PHLO_CATALOG_URI) takes a
`postgresql://user:password@host:port/database` URI; unset, the catalog is PHLO_HOME/lake/catalog.sqlite.

Stdlib only: the command line's light reader (engine.api.fastread) imports it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

CATALOG_NAME = "phlo"
"""The `catalog_name` of every row this lake writes: Trino's `iceberg.jdbc-catalog.catalog-name`."""

SCHEMES = ("postgresql", "postgres")

CATALOG_TABLES = {
    "iceberg_tables": (
        "catalog_name",
        "table_namespace",
        "table_name",
        "metadata_location",
        "previous_metadata_location",
        "iceberg_type",
    ),
    "iceberg_namespace_properties": ("catalog_name", "namespace", "property_key", "property_value"),
}
"""The JDBC catalog's two tables and their columns: what moving or copying a catalog carries over."""


def check_catalog_uri(uri: str) -> None:
    """Raise ValueError (never quoting the URI, which may hold a password) unless `uri` names a
    PostgreSQL database."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise ValueError("must be a postgresql://user:password@host:port/database URI")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("names no host: use postgresql://user:password@host:port/database")
    if not parts.path.strip("/"):
        raise ValueError("names no database: use postgresql://user:password@host:port/database")


def sqlalchemy_url(uri: str) -> str:
    """The URI as SQLAlchemy needs it to use psycopg 3 (the driver the project installs)."""
    parts = urlsplit(uri)
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def redacted(uri: str) -> str:
    """`uri` without its password, for logs, errors and the screen."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


def scrub(text: str, uri: str | None) -> str:
    """`text` (an error from the driver) with the catalog's password, if any, replaced by ***."""
    if uri is None:
        return text
    password = urlsplit(uri).password
    return text.replace(password, "***") if password else text
