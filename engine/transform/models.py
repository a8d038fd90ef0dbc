"""The model runner: discovers sql/ models, orders them by their table references, builds them in DuckDB."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import duckdb
import pyarrow as pa

from engine.errors import PhloError
from engine.transform.model_files import SQL_DIR, model_files
from engine.transform.model_refs import read_references, sql_key, write_references

PARTITION_COLUMN = "reading_month"

_HEADER = re.compile(r"^\s*--\s*([a-z_]+)\s*:\s*(.+?)\s*$")


class Materialized(StrEnum):
    INCREMENTAL = "incremental"
    TABLE = "table"


class ModelError(PhloError):
    """A model file is malformed, references an unknown table, or its SQL failed."""


@dataclass(frozen=True)
class Model:
    """One `.sql` file: the table it builds, how, and the tables it reads."""

    name: str
    path: Path
    sql: str
    materialized: Materialized
    partition_by: str | None
    depends_on: tuple[str, ...]

    @property
    def layer(self) -> str:
        return self.name.split(".")[0]


@dataclass(frozen=True)
class ModelResult:
    """What building one model did."""

    name: str
    rows: int
    seconds: float
    partitions: tuple[str, ...] = ()
    output: pa.Table | None = field(default=None, repr=False, compare=False)


def _header(sql: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in sql.splitlines():
        if not line.strip():
            continue
        match = _HEADER.match(line)
        if match is None:
            if line.lstrip().startswith("--"):
                continue
            break
        values[match.group(1)] = match.group(2)
    return values


def table_references(sql: str, path: Path | None = None) -> tuple[str, ...]:
    """Qualified tables (`schema.table`) a query reads, CTE names excluded, parsed by sqlglot."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as e:
        where = f"{path}: " if path else ""
        raise ModelError(f"{where}cannot parse the SQL: {e}", "fix the model's SQL") from e
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs = set()
    for table in tree.find_all(exp.Table):
        if table.db and table.name not in ctes:
            refs.add(f"{table.db}.{table.name}")
    return tuple(sorted(refs))


def load_model(path: Path, known: dict[str, tuple[str, ...]] | None = None) -> Model:
    """The model in `path`; the tables it reads are looked up in `known` (SQL key -> tables, added to
    when parsed) before its SQL is parsed."""
    layer, table = path.parent.name, path.stem
    sql = path.read_text()
    header = _header(sql)
    try:
        materialized = Materialized(header.get("materialized", "table"))
    except ValueError as e:
        raise ModelError(
            f"{path}: unknown materialized {header.get('materialized')!r}", "use incremental or table"
        ) from e
    partition_by = header.get("partition_by")
    if materialized is Materialized.INCREMENTAL and partition_by != PARTITION_COLUMN:
        raise ModelError(
            f"{path}: an incremental model needs '-- partition_by: {PARTITION_COLUMN}'",
            "add the header line, or use '-- materialized: table'",
        )
    return Model(
        name=f"{layer}.{table}",
        path=path,
        sql=sql,
        materialized=materialized,
        partition_by=partition_by,
        depends_on=_references(sql, path, known),
    )


def _references(sql: str, path: Path, known: dict[str, tuple[str, ...]] | None) -> tuple[str, ...]:
    if known is None:
        return table_references(sql, path)
    key = sql_key(sql)
    if key not in known:
        known[key] = table_references(sql, path)
    return known[key]


def discover_models(
    root: Path = SQL_DIR, sources: Iterable[str] = (), references: Path | None = None
) -> list[Model]:
    """Every model under `root`/<layer>/*.sql in dependency order.

    `sources` are the tables that exist without a model (the raw tables). With `references` (a file,
    engine.transform.model_refs), the tables a model reads are remembered there by its SQL, so an
    unchanged model is not parsed again. Raises ModelError for a reference to a table that is neither,
    or for a cycle.
    """
    parsed = read_references(references)
    remembered = dict(parsed)
    models = {m.name: m for m in (load_model(path, parsed) for path in model_files(root))}
    current = {sql_key(m.sql) for m in models.values()}
    kept = {k: v for k, v in parsed.items() if k in current}
    if references is not None and kept != remembered:
        write_references(references, kept)
    known = set(models) | set(sources)
    graph: dict[str, set[str]] = {}
    for model in models.values():
        unknown = [d for d in model.depends_on if d not in known]
        if unknown:
            raise ModelError(
                f"{model.path}: reads {', '.join(unknown)}, which no model builds",
                f"known tables: {', '.join(sorted(known))}",
            )
        graph[model.name] = {d for d in model.depends_on if d in models}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise ModelError(f"models reference each other in a cycle: {' -> '.join(e.args[1])}") from e
    return [models[name] for name in order]


def downstream(models: list[Model], changed: Iterable[str]) -> set[str]:
    """The models that read, directly or not, any of `changed`."""
    hit = set(changed)
    result: set[str] = set()
    for model in models:
        if hit & set(model.depends_on):
            hit.add(model.name)
            result.add(model.name)
    return result


def neighbour_months(months: Iterable[str]) -> set[str]:
    """Each month with the one before and after: the context an incremental model reads."""
    out: set[str] = set()
    for month in months:
        year, mon = (int(x) for x in month.split("-"))
        index = year * 12 + mon - 1
        for i in (index - 1, index, index + 1):
            out.add(f"{i // 12:04d}-{i % 12 + 1:02d}")
    return out


def sql_error(model: Model, error: duckdb.Error) -> ModelError:
    """DuckDB's message with the model file, and the line when DuckDB names a position."""
    text = str(error)
    line = ""
    match = re.search(r"LINE (\d+):", text)
    if match:
        line = f":{match.group(1)}"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return ModelError(f"{model.path.name}{line} ({model.name}): {first}", f"fix {model.path}")


Registrar = Callable[[duckdb.DuckDBPyConnection, str, "set[str] | None"], None]


def build_model(
    con: duckdb.DuckDBPyConnection, model: Model, months: set[str] | None, register: Registrar
) -> ModelResult:
    """Run one model in DuckDB over its inputs and return its output as Arrow.

    With `months`, an incremental model reads its partitioned inputs restricted to those months
    and their neighbours, and keeps only output rows of `months`. Raises ModelError on SQL errors.
    """
    started = time.perf_counter()
    incremental = months is not None and model.materialized is Materialized.INCREMENTAL
    for dep in model.depends_on:
        register(con, dep, neighbour_months(months) if incremental and months is not None else None)
    query = model.sql
    params: list[object] = []
    if incremental and months is not None:
        query = f"select * from ({model.sql}\n) as model where {PARTITION_COLUMN} in (select unnest($1::varchar[]))"
        params = [sorted(months)]
    try:
        output = lake_types(con.sql(query, params=params or None).to_arrow_table())
    except duckdb.Error as e:
        raise sql_error(model, e) from e
    partitions: tuple[str, ...] = ()
    if model.materialized is Materialized.INCREMENTAL and PARTITION_COLUMN in output.column_names:
        partitions = tuple(sorted(set(output[PARTITION_COLUMN].to_pylist()) | (months or set())))
    return ModelResult(
        name=model.name,
        rows=output.num_rows,
        seconds=time.perf_counter() - started,
        partitions=partitions,
        output=output,
    )


def lake_types(table: pa.Table) -> pa.Table:
    """DuckDB's Arrow output in the types Iceberg stores: int64 for whole decimals (DuckDB's sums),
    float64 for other decimals, UTC for time-zoned timestamps, plain strings."""
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_decimal(t):
            t = pa.int64() if t.scale == 0 else pa.float64()
        elif pa.types.is_timestamp(t):
            t = pa.timestamp("us", tz="UTC" if t.tz else None)
        elif pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_unsigned_integer(t):
            t = pa.int64()
        fields.append(pa.field(f.name, t, nullable=True))
    schema = pa.schema(fields)
    return table if schema == table.schema else table.cast(schema)
