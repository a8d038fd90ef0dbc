"""Publish the promoted tables from the lake's `main` to PostgreSQL: validate, binary COPY, swap in one transaction."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import duckdb
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.config import Settings
from engine.lake.store import Lake
from engine.lake.views import connect
from engine.publish.copy import (
    _refuse_nul,
)
from engine.publish.incremental import plan_increment
from engine.publish.pgcluster import PrivateCluster
from engine.publish.pgserver import ClusterError, find_server_binaries
from engine.publish.publications import ANON_ROLE, API_SCHEMA, META_SCHEMA, PUBLICATIONS, VIEWS, Publication
from engine.publish.swap import (
    _Candidate,
    _columns,
    _describe_check,
    _prepare_database,
    _published_state,
    _swap,
)
from engine.publish.target import NO_POSTGRES, PublishError, describe_target, private_cluster, redact_dsn
from engine.runs.records import PromotionRecord, PromotionState, Severity
from engine.runs.retry import RetryPolicy, call_with_retry
from engine.transform.quality import schema_checks
from schemas import TABLE_SCHEMAS

log = logging.getLogger(__name__)

APPLICATION_NAME = "phlo-tui"
DEFAULT_RETRY = RetryPolicy(max_retries=4, delay=0.5, backoff=2.0, jitter=0.2)
CONNECT_TIMEOUT_S = 5


class PublishStatus(StrEnum):
    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    BLOCKED = "blocked"


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
    copied: int | None = None
    """Rows copied when published: all of them, or only the changed ones (engine.publish.incremental)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "lake_table": self.lake_table,
            "target_table": f"{API_SCHEMA}.{self.target_table}",
            "rows": self.rows,
            "copied": self.copied,
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
        incremental: bool = True,
    ) -> None:
        self.settings = settings
        self.lake = lake
        self.retry = retry
        self.publications = tuple(publications)
        self.incremental = incremental
        """Copy only what changed since the published snapshot when that is possible; False: every
        changed table is copied whole (what tests compare the increments with)."""
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
        gated: Mapping[str, int] | None = None,
    ) -> PublishOutcome:
        """Publish the tables of `promotion` (each read at its promoted snapshot of `main`).

        `gated` names, per lake table, a snapshot whose rows this process's quality gate has just
        checked with the same pandera models (engine.pipeline): those are not checked again.

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
                    return self._publish_once(promotion, run_id, candidates, gated or {})
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
        self,
        promotion: PromotionRecord,
        run_id: str | None,
        candidates: dict[str, _Candidate],
        gated: Mapping[str, int],
    ) -> tuple[TablePublish, ...]:
        conn = self._connection()
        published, views = _published_state(conn)
        outcome: dict[str, TablePublish] = {}
        swap: list[_Candidate] = []
        # Each table's metadata is loaded once for all that is asked of it (files, schemas, snapshots).
        with self.lake.pinned():
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
                    since = previous.snapshot_id if previous is not None else None
                    if (
                        candidate is None
                        or candidate.snapshot_id != snapshot
                        or (
                            candidate.increment is not None and candidate.increment.previous_snapshot != since
                        )
                    ):
                        candidate = candidates[pub.target_table] = self._read_candidate(
                            pub, snapshot, since, checked=gated.get(pub.lake_table) == snapshot
                        )
                    if candidate.blocked is not None:
                        outcome[pub.target_table] = TablePublish(
                            pub.lake_table,
                            pub.target_table,
                            candidate.table_rows,
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
                    candidate.table_rows,
                    candidate.seconds + copy_seconds[pub.target_table],
                    PublishStatus.PUBLISHED,
                    copied=candidate.rows.num_rows,
                )
        return tuple(outcome[p.target_table] for p in self.publications)

    def _read_candidate(
        self, pub: Publication, snapshot_id: int, published: int | None, *, checked: bool = False
    ) -> _Candidate:
        """The publication's rows at `snapshot_id` of `main`, sorted by key, validated by its pandera model;
        when the `published` snapshot allows it, only the rows that changed since (engine.publish.incremental),
        validated alone: every other row was validated when it was published."""
        started = time.perf_counter()
        if self._duckdb is None:
            # Kept for the publisher's life: a new DuckDB connection costs more than reading a mart.
            self._duckdb = connect(self.settings.timezone)
        con = self._duckdb
        planned = (
            plan_increment(self.lake, con, pub, published, snapshot_id)
            if published is not None and self.incremental
            else None
        )
        if planned is not None:
            increment, rows = planned
        else:
            increment = None
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
        errors = (
            []
            if checked
            else [r for r in schema_checks(model, pub.lake_table, rows) if r.severity is Severity.ERROR]
        )
        if errors and increment is not None:
            return self._read_candidate(pub, snapshot_id, None)  # blocked: say it of the whole table
        candidate = _Candidate(pub, snapshot_id, rows, 0.0, increment=increment)
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
