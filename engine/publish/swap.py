"""Publishing into PostgreSQL: the `api` and `phlo_meta` schemas and the anonymous role, staging
tables filled by binary COPY, and the swap of every changed table in one transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from engine.ingest.validation import CheckResult
from engine.publish.copy import encode_binary_copy
from engine.publish.incremental import Increment, apply_increment, gone_table
from engine.publish.publications import (
    ANON_ROLE,
    API_SCHEMA,
    META_SCHEMA,
    NOTIFY_CHANNEL,
    DependentView,
    Publication,
)
from engine.publish.target import PublishError
from engine.runs.records import PromotionRecord

_PG_TYPES: dict[pa.DataType, tuple[str, str]] = {
    # Arrow type -> (column type in DDL, binary COPY encoding)
    pa.string(): ("text", "text"),
    pa.large_string(): ("text", "text"),
    pa.bool_(): ("boolean", "bool"),
    pa.int16(): ("smallint", "int2"),
    pa.int32(): ("integer", "int4"),
    pa.int64(): ("bigint", "int8"),
    pa.float32(): ("real", "float4"),
    pa.float64(): ("double precision", "float8"),
    pa.date32(): ("date", "date"),
}

LOCK_TIMEOUT = "10s"
"""How long the swap waits for a reader's transaction to let go of a table before it gives up (and retries)."""
# pg_advisory_xact_lock key that serialises publishers of one database ("phlo" in ASCII).
PUBLISH_LOCK = 0x70686C6F


@dataclass
class _Candidate:
    """A publication read from the lake and validated, ready to COPY (or blocked with a reason)."""

    publication: Publication
    snapshot_id: int
    rows: pa.Table
    seconds: float
    blocked: str | None = None
    columns: list[tuple[str, str, str, bool]] = field(default_factory=list)
    """(name, DDL type, binary COPY encoding, not null) per column."""
    increment: Increment | None = None
    """Set when `rows` are only the rows to insert into the published table (engine.publish.incremental)."""
    total_rows: int | None = None
    """The published table's row count after an incremental swap."""

    @property
    def table_rows(self) -> int:
        """The table's row count once swapped in."""
        return self.total_rows if self.total_rows is not None else self.rows.num_rows


@dataclass(frozen=True)
class _Published:
    snapshot_id: int
    rows: int


def _describe_check(result: CheckResult) -> str:
    on = f" on {result.column}" if result.column else ""
    return f"{result.check}{on} ({result.failing_count} failing)"


def _columns(schema: pa.Schema, pandera_columns: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    columns = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            ddl, encoding = ("timestamptz", "timestamptz") if f.type.tz else ("timestamp", "timestamp")
        elif f.type in _PG_TYPES:
            ddl, encoding = _PG_TYPES[f.type]
        else:
            raise PublishError(
                f"column {f.name!r} has Arrow type {f.type}, which has no PostgreSQL type here",
                "add the type to _PG_TYPES in engine/publish/swap.py",
            )
        nullable = pandera_columns[f.name].nullable if f.name in pandera_columns else True
        columns.append((f.name, ddl, encoding, not nullable))
    return columns


def _prepare_database(conn: psycopg.Connection[Any]) -> None:
    """Once per connection: role web_anon (NOLOGIN), schemas api and phlo_meta, the publish state table.

    Creates only what is missing, so a role without CREATEROLE works against a prepared database.
    """
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
        role = conn.execute(
            "select rolcanlogin from pg_catalog.pg_roles where rolname = %s", (ANON_ROLE,)
        ).fetchone()
        if role is None:
            conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(ANON_ROLE)))
        elif role[0]:
            conn.execute(sql.SQL("alter role {} nologin").format(sql.Identifier(ANON_ROLE)))
        for schema in (API_SCHEMA, META_SCHEMA):
            exists = conn.execute(
                "select 1 from pg_catalog.pg_namespace where nspname = %s", (schema,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("grant usage on schema {} to {}").format(
                sql.Identifier(API_SCHEMA), sql.Identifier(ANON_ROLE)
            )
        )
        state = conn.execute(
            "select 1 from pg_catalog.pg_tables where schemaname = %s and tablename = %s",
            (META_SCHEMA, "publish_state"),
        ).fetchone()
        if state is not None:
            return
        conn.execute(
            sql.SQL(
                """
                create table {} (
                    table_name text primary key,
                    lake_table text not null,
                    promotion_id bigint not null,
                    snapshot_id bigint not null,
                    rows bigint not null,
                    run_id text,
                    published_at timestamptz not null default now()
                )
                """
            ).format(sql.Identifier(META_SCHEMA, "publish_state"))
        )


def _published_state(conn: psycopg.Connection[Any]) -> tuple[dict[str, _Published], set[str]]:
    """Per api table that exists: the snapshot and row count published into it; and the api views."""
    rows = conn.execute(
        sql.SQL(
            "select s.table_name, s.snapshot_id, s.rows from {} as s "
            "join pg_catalog.pg_tables as t on t.schemaname = %s and t.tablename = s.table_name"
        ).format(sql.Identifier(META_SCHEMA, "publish_state")),
        (API_SCHEMA,),
    ).fetchall()
    views = conn.execute(
        "select viewname from pg_catalog.pg_views where schemaname = %s", (API_SCHEMA,)
    ).fetchall()
    return {r[0]: _Published(r[1], r[2]) for r in rows}, {v[0] for v in views}


def _swap(
    conn: psycopg.Connection[Any],
    promotion: PromotionRecord,
    run_id: str | None,
    candidates: Sequence[_Candidate],
    views: Sequence[DependentView],
) -> dict[str, float]:
    """One transaction: COPY each candidate into a staging table, then swap them into `api`,
    recreate the dependent views, record the state and tell PostgREST to reload its schema cache.

    Readers (READ COMMITTED) see the old tables until the commit and the new ones after it; the
    staging happens before any lock on an api table is taken. Returns COPY seconds per table.
    """
    seconds: dict[str, float] = {}
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
        conn.execute("select set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        for candidate in candidates:
            started = time.perf_counter()
            _stage(conn, candidate)
            seconds[candidate.publication.target_table] = time.perf_counter() - started
        for view in views:
            conn.execute(sql.SQL("drop view if exists {}").format(sql.Identifier(API_SCHEMA, view.name)))
        for candidate in candidates:
            pub = candidate.publication
            target = sql.Identifier(API_SCHEMA, pub.target_table)
            if candidate.increment is not None:
                started = time.perf_counter()
                candidate.total_rows = apply_increment(
                    conn, pub, candidate.increment, [c[0] for c in candidate.columns]
                )
                seconds[pub.target_table] += time.perf_counter() - started
            else:
                conn.execute(sql.SQL("drop table if exists {}").format(target))
                conn.execute(
                    sql.SQL("alter table {} set schema {}").format(
                        sql.Identifier(META_SCHEMA, pub.target_table), sql.Identifier(API_SCHEMA)
                    )
                )
                conn.execute(sql.SQL("grant select on {} to {}").format(target, sql.Identifier(ANON_ROLE)))
            conn.execute(
                sql.SQL("comment on table {} is {}").format(
                    target,
                    sql.Literal(
                        f"{pub.lake_table} as of snapshot {candidate.snapshot_id} (promotion {promotion.id})"
                        + (f", newest {pub.days} days" if pub.days else "")
                    ),
                )
            )
            conn.execute(
                sql.SQL(
                    "insert into {} (table_name, lake_table, promotion_id, snapshot_id, rows, run_id) "
                    "values (%s, %s, %s, %s, %s, %s) on conflict (table_name) do update set "
                    "lake_table = excluded.lake_table, promotion_id = excluded.promotion_id, "
                    "snapshot_id = excluded.snapshot_id, rows = excluded.rows, run_id = excluded.run_id, "
                    "published_at = now()"
                ).format(sql.Identifier(META_SCHEMA, "publish_state")),
                (
                    pub.target_table,
                    pub.lake_table,
                    promotion.id,
                    candidate.snapshot_id,
                    candidate.table_rows,
                    run_id,
                ),
            )
        for view in views:
            name = sql.Identifier(API_SCHEMA, view.name)
            conn.execute(sql.SQL("create view {} as {}").format(name, view.query))
            conn.execute(sql.SQL("grant select on {} to {}").format(name, sql.Identifier(ANON_ROLE)))
            conn.execute(sql.SQL("comment on view {} is {}").format(name, sql.Literal(view.comment)))
        conn.execute("select pg_notify(%s, %s)", (NOTIFY_CHANNEL, "reload schema"))
    return seconds


def _stage(conn: psycopg.Connection[Any], candidate: _Candidate) -> None:
    """Create phlo_meta.<target> and fill it with a binary COPY; the primary key is built after the load.
    An increment's rows get no key (they are inserted into the api table, which has it), and the keys to
    delete are staged next to them."""
    _create_staging(conn, candidate)
    _copy_rows(conn, candidate)
    if candidate.increment is None:
        _add_keys(conn, candidate)
    else:
        _stage_gone(conn, candidate, candidate.increment)


def _stage_gone(conn: psycopg.Connection[Any], candidate: _Candidate, increment: Increment) -> None:
    keys = [c for c in candidate.columns if c[0] in candidate.publication.key]
    gone = gone_table(candidate.publication.target_table)
    conn.execute(sql.SQL("drop table if exists {}").format(gone))
    conn.execute(
        sql.SQL("create table {} ({})").format(
            gone,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(ddl)) for n, ddl, _, _ in keys
            ),
        )
    )
    statement = sql.SQL("copy {} ({}) from stdin (format binary)").format(
        gone, sql.SQL(", ").join(sql.Identifier(k[0]) for k in keys)
    )
    if increment.gone.num_rows:
        payload = encode_binary_copy(increment.gone.select([k[0] for k in keys]), [k[2] for k in keys])
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(payload)


def _create_staging(conn: psycopg.Connection[Any], candidate: _Candidate) -> None:
    staging = sql.Identifier(META_SCHEMA, candidate.publication.target_table)
    conn.execute(sql.SQL("drop table if exists {}").format(staging))
    conn.execute(
        sql.SQL("create table {} ({})").format(
            staging,
            sql.SQL(", ").join(
                sql.SQL("{} {}{}").format(
                    sql.Identifier(name), sql.SQL(ddl), sql.SQL(" not null" if not_null else "")
                )
                for name, ddl, _, not_null in candidate.columns
            ),
        )
    )


def _copy_rows(conn: psycopg.Connection[Any], candidate: _Candidate) -> None:
    """COPY ... FROM STDIN (FORMAT BINARY) into the staging table."""
    names = [c[0] for c in candidate.columns]
    statement = sql.SQL("copy {} ({}) from stdin (format binary)").format(
        sql.Identifier(META_SCHEMA, candidate.publication.target_table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
    )
    payload = encode_binary_copy(candidate.rows.select(names), [c[2] for c in candidate.columns])
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(payload)


def _add_keys(conn: psycopg.Connection[Any], candidate: _Candidate) -> None:
    pub = candidate.publication
    staging = sql.Identifier(META_SCHEMA, pub.target_table)
    conn.execute(
        sql.SQL("alter table {} add constraint {} primary key ({})").format(
            staging,
            sql.Identifier(f"{pub.target_table}_pkey"),
            sql.SQL(", ").join(map(sql.Identifier, pub.key)),
        )
    )
