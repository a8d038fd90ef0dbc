"""Publish the promoted tables from the lake's `main` to PostgreSQL: validate, binary COPY, swap in one transaction."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.config import Settings
from engine.ingest.validation import CheckResult
from engine.lake.store import Lake
from engine.lake.views import connect
from engine.publish.copy import (
    _refuse_nul,
    encode_binary_copy,
)
from engine.publish.pgcluster import ClusterError, PrivateCluster, find_server_binaries
from engine.publish.target import NO_POSTGRES, PublishError, describe_target, private_cluster, redact_dsn
from engine.runs.records import PromotionRecord, PromotionState, Severity
from engine.runs.retry import RetryPolicy, call_with_retry
from engine.transform.model_files import LAYERS, SQL_DIR
from engine.transform.quality import schema_checks
from schemas import TABLE_SCHEMAS

log = logging.getLogger(__name__)

API_SCHEMA = "api"
META_SCHEMA = "phlo_meta"
"""Private to the publishing role: the publish state and the staging tables of a publish in progress."""
ANON_ROLE = "web_anon"
NOTIFY_CHANNEL = "pgrst"
APPLICATION_NAME = "phlo-tui"
DEFAULT_RETRY = RetryPolicy(max_retries=4, delay=0.5, backoff=2.0, jitter=0.2)
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT = "10s"
"""How long the swap waits for a reader's transaction to let go of a table before it gives up (and retries)."""
# pg_advisory_xact_lock key that serialises publishers of one database ("phlo" in ASCII).
PUBLISH_LOCK = 0x70686C6F


class PublishStatus(StrEnum):
    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Publication:
    """Lake table `lake_table` (as of a promotion) is served as `api.<target_table>`."""

    lake_table: str
    target_table: str
    key: tuple[str, ...]
    days: int | None = None
    """Only the newest `days` local days (by reading_date) of the snapshot; None: every row."""


_PUBLISH_HEADER = re.compile(r"^\s*--\s*publish\s*:\s*(.*?)\s*$")
_API_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def discover_publications(root: Path = SQL_DIR) -> tuple[Publication, ...]:
    """The models whose header says `-- publish: <api name> key=<column>[,<column>] [days=<n>]`,
    marts first, then gold, silver and bronze, each layer by file name.

    So publishing a new mart is one header line in its SQL file. Raises PublishError for a
    malformed header or two models claiming one api name.
    """
    found: list[Publication] = []
    for layer in reversed(LAYERS):
        for path in sorted((root / layer).glob("*.sql")):
            spec = _publish_header(path)
            if spec is not None:
                found.append(_publication(f"{layer}.{path.stem}", spec, path))
    names = [p.target_table for p in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PublishError(
            f"api name(s) {', '.join(twice)} published by more than one model", f"rename in {root}"
        )
    return tuple(found)


def _publish_header(path: Path) -> str | None:
    """The `publish:` value of the model's leading comment block, None when it has none."""
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            return None
        match = _PUBLISH_HEADER.match(line)
        if match is not None:
            return match.group(1)
    return None


def _publication(lake_table: str, spec: str, path: Path) -> Publication:
    hint = f"write it as '-- publish: <api name> key=<column>[,<column>] [days=<n>]' in {path}"
    name, *options = spec.split()
    settings = dict(option.partition("=")[::2] for option in options)
    unknown = set(settings) - {"key", "days"}
    if not _API_NAME.match(name) or "key" not in settings or unknown or not all(settings.values()):
        raise PublishError(f"{path.name}: malformed publish header {spec!r}", hint)
    days = settings.get("days")
    if days is not None and not days.isdigit():
        raise PublishError(f"{path.name}: days={days!r} is not a whole number of days", hint)
    return Publication(
        lake_table, name, tuple(settings["key"].split(",")), days=int(days) if days is not None else None
    )


# The api names drop the layer prefixes (mrt_, fct_): they are what apps and PostgREST URLs see.
PUBLICATIONS: tuple[Publication, ...] = discover_publications()


@dataclass(frozen=True)
class DependentView:
    """A view in `api` over a published table, dropped and recreated whenever that table is swapped."""

    name: str
    depends_on: str
    query: sql.Composable
    comment: str


VIEWS: tuple[DependentView, ...] = (
    DependentView(
        "time_in_range_by_weekday",
        "daily_glucose_metrics",
        # PostgREST does not aggregate by default: the weekday average is served as a view.
        sql.SQL(
            """
            select
                extract(isodow from d.reading_date)::integer as day_of_week,
                d.day_name,
                count(*)::integer as days,
                round(avg(d.time_in_range_pct)::numeric, 1) as avg_time_in_range_pct,
                round(avg(d.avg_glucose_mg_dl)::numeric, 1) as avg_glucose_mg_dl
            from {} as d
            group by 1, 2
            order by 1
            """
        ).format(sql.Identifier(API_SCHEMA, "daily_glucose_metrics")),
        "Mean of the daily time in range (70-180 mg/dL) per ISO weekday, 1 = Monday, over the published days.",
    ),
)

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

_WHOLE_TABLE = "select * from publish_source"
_NEWEST_DAYS = (
    "select * from publish_source "
    "where reading_date > (select max(reading_date) from publish_source) - $days::integer"
)


@dataclass(frozen=True)
class TablePublish:
    """What the publish did to one table. `rows` is the table's row count (of the candidate when blocked)."""

    lake_table: str
    target_table: str
    rows: int
    seconds: float
    status: PublishStatus
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "lake_table": self.lake_table,
            "target_table": f"{API_SCHEMA}.{self.target_table}",
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "status": self.status.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PublishOutcome:
    """One publish: where to (`target`, no secrets), why nothing happened (`skipped`), each table."""

    target: dict[str, Any]
    skipped: str | None
    tables: tuple[TablePublish, ...] = ()

    @property
    def published_rows(self) -> int:
        return sum(t.rows for t in self.tables if t.status is PublishStatus.PUBLISHED)

    @property
    def blocked(self) -> tuple[TablePublish, ...]:
        return tuple(t for t in self.tables if t.status is PublishStatus.BLOCKED)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "skipped": self.skipped,
            "tables": [t.to_json() for t in self.tables],
        }


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


@dataclass(frozen=True)
class _Published:
    snapshot_id: int
    rows: int


def _is_transient(error: BaseException) -> bool:
    """Server down, restarting, refusing connections, a lock or deadlock timeout: worth retrying."""
    return isinstance(error, psycopg.OperationalError)


class Publisher:
    """Publishes promotions to one PostgreSQL target, resolved on first use:

    PHLO_POSTGRES_DSN when set; else a private cluster under PHLO_HOME/postgres when server
    binaries are installed (started on demand, stopped by `close()`); else every publish is
    skipped with NO_POSTGRES. One connection is kept and reused between publishes.
    """

    def __init__(
        self,
        settings: Settings,
        lake: Lake,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        publications: Sequence[Publication] = PUBLICATIONS,
    ) -> None:
        self.settings = settings
        self.lake = lake
        self.retry = retry
        self.publications = tuple(publications)
        self._resolved = False
        self._cluster: PrivateCluster | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._duckdb: duckdb.DuckDBPyConnection | None = None
        self._mutex = threading.RLock()

    # -- target ----------------------------------------------------------------------------------

    def _resolve(self) -> str | None:
        """'dsn', 'managed' or None (no PostgreSQL)."""
        if self.settings.postgres_dsn:
            return "dsn"
        if not self._resolved:
            self._cluster = private_cluster(self.settings, find_server_binaries)
            self._resolved = True
        return "managed" if self._cluster is not None else None

    @property
    def cluster(self) -> PrivateCluster | None:
        """The private cluster when that is the target (whether running or not)."""
        self._resolve()
        return self._cluster

    def describe_target(self) -> dict[str, Any]:
        """JSON-safe description of the target for `status --json`; never a password. Does not connect."""
        return describe_target(self.settings, self.cluster)

    def _where(self) -> str:
        target = self.describe_target()
        if target["kind"] == "managed":
            return f"the private PostgreSQL ({target['socket_dir']}, port {target['port']})"
        host = target.get("host") or "the default socket"
        return f"PostgreSQL at {host}:{target.get('port') or 5432}/{target.get('database') or ''}"

    def _connection(self) -> psycopg.Connection[Any]:
        """The reused connection, or a new one (starting the private cluster first when that is the target)."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        if self._resolve() == "dsn":
            assert self.settings.postgres_dsn is not None
            dsn = self.settings.postgres_dsn.reveal()
            redact_dsn(dsn)  # refuse a malformed string before libpq can echo it
        else:
            assert self._cluster is not None
            self._cluster.ensure_running()
            dsn = self._cluster.conninfo()
        # Defaults only: what the DSN says wins.
        given = conninfo_to_dict(dsn)
        defaults = {"application_name": APPLICATION_NAME, "connect_timeout": str(CONNECT_TIMEOUT_S)}
        conn = psycopg.connect(
            make_conninfo(dsn, **{k: v for k, v in defaults.items() if k not in given}), autocommit=True
        )
        try:
            _prepare_database(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection; stop the private cluster if this process started it."""
        with self._mutex:
            self._drop_connection()
            if self._duckdb is not None:
                self._duckdb.close()
                self._duckdb = None
            if self._cluster is not None:
                self._cluster.stop()

    # -- publishing ------------------------------------------------------------------------------

    def publish(
        self,
        promotion: PromotionRecord,
        *,
        run_id: str | None = None,
        on_retry: Callable[[int, float, str], None] | None = None,
    ) -> PublishOutcome:
        """Publish the tables of `promotion` (each read at its promoted snapshot of `main`).

        A table whose snapshot is already published is `unchanged` (one query decides it); a table
        failing an error-severity check of its pandera schema is `blocked` and keeps its previous
        version. All the others are swapped in one transaction. Without any PostgreSQL the outcome
        is `skipped` (not an error). `on_retry(attempt, seconds, error)` is told before each retry.
        Raises PublishError when PostgreSQL stays unreachable after the retries, or refuses for a
        reason retrying cannot fix (privileges, a foreign view on an api table).
        """
        if promotion.state is not PromotionState.DONE:
            raise PublishError(
                f"promotion {promotion.id} is {promotion.state.value}, not done",
                "only a finished promotion of main is published",
            )
        with self._mutex:
            if self._resolve() is None:
                return PublishOutcome(self.describe_target(), NO_POSTGRES)
            candidates: dict[str, _Candidate] = {}

            def attempt() -> tuple[TablePublish, ...]:
                try:
                    return self._publish_once(promotion, run_id, candidates)
                except psycopg.OperationalError:
                    self._drop_connection()  # reconnect on the next attempt
                    raise

            def retrying(number: int, seconds: float, error: BaseException) -> None:
                log.warning("publish attempt %d failed (%s); retrying in %.1f s", number, error, seconds)
                if on_retry is not None:
                    on_retry(number, seconds, str(error))

            try:
                tables = call_with_retry(attempt, self.retry, transient=_is_transient, on_retry=retrying)
            except ClusterError as e:
                raise PublishError(e.message, e.hint) from e
            except psycopg.Error as e:
                raise self._error(promotion, e) from e
            return PublishOutcome(self.describe_target(), None, tables)

    def _error(self, promotion: PromotionRecord, error: psycopg.Error) -> PublishError:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        kept = f"the lake and promotion {promotion.id} are kept; the next run publishes what is missing"
        if isinstance(error, psycopg.OperationalError):
            return PublishError(
                f"cannot publish to {self._where()} after {self.retry.attempts} attempts: {detail}",
                f"check that PostgreSQL runs and accepts the connection; {kept}",
                transient=True,
            )
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            return PublishError(
                f"{self._where()} refused the publish: {detail}",
                f"the publishing role needs CREATE on the database (or on schemas {API_SCHEMA} and "
                f"{META_SCHEMA}), and role {ANON_ROLE} must exist NOLOGIN (or the role may create it); {kept}",
            )
        if isinstance(error, psycopg.errors.DependentObjectsStillExist):
            return PublishError(
                f"{self._where()} refused the publish: {detail}",
                f"phlo-tui replaces the tables of schema {API_SCHEMA} on every publish; move views over "
                f"them to another schema; {kept}",
            )
        return PublishError(f"publishing to {self._where()} failed: {detail}", kept)

    def _publish_once(
        self, promotion: PromotionRecord, run_id: str | None, candidates: dict[str, _Candidate]
    ) -> tuple[TablePublish, ...]:
        conn = self._connection()
        published, views = _published_state(conn)
        outcome: dict[str, TablePublish] = {}
        swap: list[_Candidate] = []
        for pub in self.publications:
            snapshot = promotion.snapshot(pub.lake_table)
            previous = published.get(pub.target_table)
            if snapshot is None:
                outcome[pub.target_table] = TablePublish(
                    pub.lake_table,
                    pub.target_table,
                    0,
                    0.0,
                    PublishStatus.BLOCKED,
                    f"{pub.lake_table} is not part of promotion {promotion.id}",
                )
            elif previous is not None and previous.snapshot_id == snapshot:
                outcome[pub.target_table] = TablePublish(
                    pub.lake_table, pub.target_table, previous.rows, 0.0, PublishStatus.UNCHANGED
                )
            else:
                candidate = candidates.get(pub.target_table)
                if candidate is None or candidate.snapshot_id != snapshot:
                    candidate = candidates[pub.target_table] = self._read_candidate(pub, snapshot)
                if candidate.blocked is not None:
                    outcome[pub.target_table] = TablePublish(
                        pub.lake_table,
                        pub.target_table,
                        candidate.rows.num_rows,
                        candidate.seconds,
                        PublishStatus.BLOCKED,
                        candidate.blocked,
                    )
                    log.warning("publish of %s blocked: %s", pub.target_table, candidate.blocked)
                else:
                    swap.append(candidate)
        present = set(published) | {c.publication.target_table for c in swap}
        swapped = {c.publication.target_table for c in swap}
        rebuild = [
            v for v in VIEWS if v.depends_on in present and (v.depends_on in swapped or v.name not in views)
        ]
        if swap or rebuild:
            copy_seconds = _swap(conn, promotion, run_id, swap, rebuild)
            for candidate in swap:
                pub = candidate.publication
                outcome[pub.target_table] = TablePublish(
                    pub.lake_table,
                    pub.target_table,
                    candidate.rows.num_rows,
                    candidate.seconds + copy_seconds[pub.target_table],
                    PublishStatus.PUBLISHED,
                )
        return tuple(outcome[p.target_table] for p in self.publications)

    def _read_candidate(self, pub: Publication, snapshot_id: int) -> _Candidate:
        """The publication's rows at `snapshot_id` of `main`, sorted by key, validated by its pandera model."""
        started = time.perf_counter()
        if self._duckdb is None:
            # Kept for the publisher's life: a new DuckDB connection costs more than reading a mart.
            self._duckdb = connect(self.settings.timezone)
        con = self._duckdb
        self.lake.register_duckdb(
            con, pub.lake_table, "main", as_name="publish_source", snapshot_id=snapshot_id
        )
        if pub.days is None:
            relation = con.sql(_WHOLE_TABLE)
        else:
            relation = con.sql(_NEWEST_DAYS, params={"days": pub.days})
        rows = relation.to_arrow_table()
        rows = rows.sort_by([(k, "ascending") for k in pub.key])
        model = TABLE_SCHEMAS[pub.lake_table]
        errors = [r for r in schema_checks(model, pub.lake_table, rows) if r.severity is Severity.ERROR]
        candidate = _Candidate(pub, snapshot_id, rows, 0.0)
        if errors:
            candidate.blocked = "schema check failed: " + "; ".join(_describe_check(r) for r in errors)
        else:
            try:
                candidate.columns = _columns(rows.schema, model.to_schema().columns)
                _refuse_nul(rows)
            except PublishError as e:
                candidate.blocked = e.message
        candidate.seconds = time.perf_counter() - started
        return candidate


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
                "add the type to _PG_TYPES in engine/publish/publisher.py",
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
                    candidate.rows.num_rows,
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
    """Create phlo_meta.<target> and fill it with a binary COPY; the primary key is built after the load."""
    _create_staging(conn, candidate)
    _copy_rows(conn, candidate)
    _add_keys(conn, candidate)


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
