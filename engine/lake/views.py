"""DuckDB over the lake's Parquet files: the zoned session, the views and the query result, without pyiceberg.

Shared by the lake (engine/lake/store.py), which knows a snapshot's files from its Avro manifests, and the
start-up reader (engine/api/fastread.py), which knows them from the run store: both read the same files
through the same SELECT, so they give the same rows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from engine.sql_macros import define_macros

Column = tuple[str, str]
"""A table column as (name, DuckDB type), in the order of the snapshot's schema."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class LakeReader(Protocol):
    """What page loaders read the lake through: the Engine, or at start-up the FastReader."""

    def has_table(self, name: str) -> bool: ...

    def query(self, sql: str, branch: str = ..., params: dict[str, Any] | None = ...) -> QueryResult: ...


def connect(timezone: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose session zone and `phlo_timezone` variable are the user's zone, with the
    macros of sql/macros/ defined."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    define_macros(con)
    return in_zone(con, timezone)


def in_zone(con: duckdb.DuckDBPyConnection, timezone: str) -> duckdb.DuckDBPyConnection:
    con.execute(f"SET TimeZone = '{_zone(timezone)}'")
    con.execute(f"SET VARIABLE phlo_timezone = '{_zone(timezone)}'")
    return con


def _zone(name: str) -> str:
    # The zone was validated as an IANA name by the settings; refuse anything that could break a literal.
    if not name.replace("/", "").replace("_", "").replace("-", "").replace("+", "").isalnum():
        raise ValueError(f"bad time zone {name!r}")
    return name


def select_sql(con: duckdb.DuckDBPyConnection, columns: Sequence[Column], files: Sequence[str]) -> str:
    """SELECT of a table's `columns` over its Parquet `files`, or an empty typed relation when there are none.

    A column added to the table after a file was written reads as NULL from that file.
    """
    if not files:
        nulls = ", ".join(f"CAST(NULL AS {kind}) AS {ident(name)}" for name, kind in columns)
        return f"SELECT {nulls} WHERE false"
    # Lake files never change, so the same files and columns always give the same text; building
    # it binds the files (reads every footer), which the view or query using it does again anyway.
    key = (tuple(files), tuple(columns))
    with _selects_lock:
        cached = _selects.get(key)
    if cached is not None:
        return cached
    # The driver renders the file list as escaped literals.
    relation = con.read_parquet(list(files), union_by_name=True)
    present = set(relation.columns)
    text = relation.project(
        ", ".join(
            ident(name) if name in present else f"CAST(NULL AS {kind}) AS {ident(name)}"
            for name, kind in columns
        )
    ).sql_query()
    with _selects_lock:
        _selects[key] = text
        while len(_selects) > _SELECTS_MAX:
            _selects.popitem(last=False)
    return text


_SELECTS_MAX = 256
_selects: OrderedDict[tuple[tuple[str, ...], tuple[Column, ...]], str] = OrderedDict()
_selects_lock = threading.Lock()


def create_view(con: duckdb.DuckDBPyConnection, view: str, select: str) -> None:
    """CREATE OR REPLACE VIEW `view` ('schema.name' creates the schema) AS `select`."""
    schema, _, name = view.rpartition(".")
    if schema:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
    target = f"{ident(schema)}.{ident(name)}" if schema else ident(name)
    con.execute(f"CREATE OR REPLACE VIEW {target} AS {select}")


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
