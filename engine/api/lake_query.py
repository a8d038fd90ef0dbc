"""DuckDB SQL over the lake's tables as of a branch, and a model column's lineage (engine.api.facade's
`query` and `lineage`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from engine.api.reads import BRANCHES
from engine.errors import PhloError
from engine.lake.views import QueryResult

if TYPE_CHECKING:
    from engine.api.facade import Engine
    from engine.transform.models import Model


def model_lineage(models: list[Model], table: str, column: str) -> dict[str, Any]:
    """Where a model's output column comes from: a tree of {"name", "source", "children"} (sqlglot)."""
    from sqlglot.lineage import Node, lineage

    model = next((m for m in models if m.name == table), None)
    if model is None:
        raise PhloError(f"no model builds {table!r}", "models are the .sql files under sql/")
    try:
        node = lineage(column, model.sql, dialect="duckdb")
    except Exception as e:
        raise PhloError(f"no lineage for {table}.{column}: {e}", "check the column name") from e

    def walk(n: Node) -> dict[str, Any]:
        return {
            "name": n.name,
            "source": n.source.sql(dialect="duckdb")[:200],
            "children": [walk(c) for c in n.downstream],
        }

    return walk(node)


def query_lake(engine: Engine, sql: str, branch: str, params: dict[str, Any] | None) -> QueryResult:
    """Run DuckDB SQL over the lake's tables as of `branch`, by their Iceberg names (raw.glucose_entries).

    `main` is read as of the last recorded promotion, so its tables are one consistent set.
    Raises PhloError with DuckDB's message for a bad query or an unknown branch.
    """
    import duckdb

    from engine.lake.views import connect

    if branch not in BRANCHES:
        raise PhloError(f"unknown branch {branch!r}", f"use one of {', '.join(BRANCHES)}")
    con = connect(zone_literal(engine.settings.timezone))
    try:
        pinned = engine.main_snapshots() if branch == "main" else {}
        registered = 0
        for name in engine.lake_tables():
            if not engine.lake.table_exists(name):
                continue
            engine.lake.register_duckdb(con, name, branch, snapshot_id=pinned.get(name))
            registered += 1
        try:
            relation = con.sql(sql, params=params)
            if relation is None:
                return QueryResult((), [])
            return QueryResult(tuple(relation.columns), relation.fetchall())
        except duckdb.CatalogException as e:
            if registered:
                raise PhloError(
                    f"SQL error: {e}", "check the query; tables are named like raw.glucose_entries"
                ) from e
            raise PhloError(
                f"the lake of {engine.settings.home} has no tables yet",
                f"run `{engine.settings.command('run')}` first",
            ) from e
        except duckdb.Error as e:
            raise PhloError(
                f"SQL error: {e}", "check the query; tables are named like raw.glucose_entries"
            ) from e
    finally:
        con.close()


def zone_literal(zone: str) -> str:
    # Settings validated the zone as an IANA name; this keeps the literal safe regardless.
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", zone):
        raise PhloError(f"bad time zone {zone!r}", "use an IANA name such as Europe/Berlin")
    return zone
