"""Builds the SQL layers on `dev` for the local months a run touched, then gates the outputs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.ingest.tables import RAW_TABLES
from engine.ingest.validation import CheckResult
from engine.lake.scratch import scratch, views_cursor
from engine.lake.store import Lake
from engine.lake.views import in_zone
from engine.runs.store import RunStore
from engine.transform.models import (
    Materialized,
    Model,
    ModelResult,
    build_model,
    discover_models,
    downstream,
)
from engine.transform.quality import (
    GateReport,
    continuity_check,
    freshness_check,
    reconciliation_check,
    report,
    schema_checks,
)

log = logging.getLogger(__name__)

SILVER_READINGS = "silver.fct_glucose_readings"
GOLD_DAILY = "gold.fct_daily_glucose_metrics"


@dataclass(frozen=True)
class LayerBuild:
    """What one layer build wrote: each model's result, and the months it rebuilt (None: everything)."""

    results: tuple[ModelResult, ...]
    months: frozenset[str] | None
    schema_checks: Mapping[str, Future[list[CheckResult]]]
    """Each model's schema checks, begun while the build went on (`SchemaChecks`)."""

    def output(self, name: str) -> pa.Table | None:
        for result in self.results:
            if result.name == name:
                return result.output
        return None

    def schema_results(self, result: ModelResult) -> list[CheckResult]:
        """The schema checks of one model's output (each was begun during the build)."""
        return self.schema_checks[result.name].result()


def _schema_results(result: ModelResult) -> list[CheckResult]:
    from schemas import TABLE_SCHEMAS

    model = TABLE_SCHEMAS.get(result.name)
    if model is None or result.output is None:
        return []
    return schema_checks(model, result.name, result.output)


class SchemaChecks:
    """Each model's schema checks (pandas and pandera, engine/transform/quality.py), run one model at a
    time in a thread of their own while the build goes on: the next models' SQL runs in DuckDB without
    Python's lock, so the checks of a run's dozen outputs take little time of their own. The gate takes
    their results in the models' order; an error in a check is raised there, as when the gate ran it."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phlo-schema-checks")
        self.begun: dict[str, Future[list[CheckResult]]] = {}

    def begin(self, result: ModelResult) -> None:
        self.begun[result.name] = self._pool.submit(_schema_results, result)

    def close(self, *, cancel: bool = False) -> None:
        """No more checks; the begun ones finish (unless `cancel`: a failed build's are dropped)."""
        self._pool.shutdown(wait=cancel, cancel_futures=cancel)


def local_months(rows: pa.Table, timezone: str) -> set[str]:
    """The local 'YYYY-MM' months of the readings in a raw batch."""
    if rows.num_rows == 0:
        return set()
    with scratch() as con:
        in_zone(con, timezone).register("batch", rows.select(["reading_ts"]))
        found = con.sql(
            "select distinct strftime(timezone(getvariable('phlo_timezone'), reading_ts), '%Y-%m') from batch"
        ).fetchall()
    return {m for (m,) in found if m is not None}


HOUR_MS = 3_600_000
# Models may look this far across a record's time (the effectiveness mart reads glucose up to 4 h
# after a bolus and 1 h before): a record this close to a month's edge also marks the neighbour
# month pending, so rows there that read it are rebuilt too.
MODEL_REACH_MS = 4 * HOUR_MS


def touched_months(rows: pa.Table, time_column: str, timezone: str) -> set[str]:
    """Local months of the records, and of the instants `MODEL_REACH_MS` either side of them."""
    if rows.num_rows == 0:
        return set()
    times = rows[time_column].combine_chunks()
    reach = pa.scalar(timedelta(milliseconds=MODEL_REACH_MS), pa.duration("us"))
    shifted = pa.chunked_array([times, pc.subtract(times, reach), pc.add(times, reach)])
    return local_months(pa.table({"reading_ts": shifted}), timezone)


class LayerBuilder:
    """Runs every model of sql/ in dependency order and writes each to the lake on a branch."""

    def __init__(self, lake: Lake, store: RunStore, timezone: str, models: list[Model] | None = None) -> None:
        self.lake = lake
        self.store = store
        self.timezone = timezone
        self.models = models if models is not None else discover_models(sources=[t.name for t in RAW_TABLES])

    def build(
        self,
        run_id: str,
        months: set[str] | None,
        branch: str = "dev",
        checkpoint: Callable[[], None] = lambda: None,
        *,
        whole_tables: bool = True,
    ) -> LayerBuild:
        """Rebuild the local `months` (None: a full refresh of every model).

        With `whole_tables` False (a long run's batch before its last), the whole-table models that
        no incremental model reads are left for the last batch: each reads every month, so building
        them once per batch would only be overwritten.

        Each model is one recorded step with its rows and seconds; a SQL error names the file and
        line. Raises StepFailed from the first model that fails; models already written stay on
        `dev`, and the months stay pending in the run store for the next run.
        """
        results: list[ModelResult] = []
        later = set() if whole_tables else self._whole_table_leaves()
        checks = SchemaChecks()
        try:
            self._build_models(run_id, months, branch, checkpoint, later, results, checks)
        except BaseException:
            checks.close(cancel=True)
            raise
        checks.close()
        return LayerBuild(tuple(results), frozenset(months) if months is not None else None, checks.begun)

    def _build_models(
        self,
        run_id: str,
        months: set[str] | None,
        branch: str,
        checkpoint: Callable[[], None],
        later: set[str],
        results: list[ModelResult],
        checks: SchemaChecks,
    ) -> None:
        # The process's shared DuckDB database (opening one costs more than a small model's query),
        # whose views registered for the build are dropped when it ends; and, as the run holds the
        # writer lease, each table is loaded from the catalog once for the build.
        with self.lake.pinned(), views_cursor() as cursor:
            con = in_zone(cursor, self.timezone)
            for model in self.models:
                if model.name in later:
                    continue
                checkpoint()
                with self.store.step(run_id, f"model {model.name}") as step:
                    result = build_model(con, model, months, self._registrar(branch))
                    checks.begin(result)
                    self.lake.write_model(
                        model.name,
                        result.output if result.output is not None else pa.table({}),
                        partition_by=model.partition_by,
                        partitions=set(result.partitions)
                        if months is not None and model.materialized is Materialized.INCREMENTAL
                        else None,
                        branch=branch,
                        snapshot_properties={"phlo.run-id": run_id},
                    )
                    step.rows = result.rows
                    step.detail.update(
                        seconds=round(result.seconds, 4),
                        partitions=list(result.partitions),
                        file=str(model.path.relative_to(model.path.parents[2])),
                    )
                results.append(result)

    def _whole_table_leaves(self) -> set[str]:
        """Whole-table models whose every reader, direct or not, is a whole-table model too."""
        incremental = {m.name for m in self.models if m.materialized is Materialized.INCREMENTAL}
        return {
            m.name
            for m in self.models
            if m.materialized is Materialized.TABLE and not downstream(self.models, [m.name]) & incremental
        }

    def _registrar(self, branch: str) -> Callable[[duckdb.DuckDBPyConnection, str, set[str] | None], None]:
        def register(con: duckdb.DuckDBPyConnection, name: str, months: set[str] | None) -> None:
            # The table's current schema: a home written by an older release has raw tables whose
            # new declared columns no write has reached yet; the models read them as null.
            self.lake.register_duckdb(con, name, branch, partitions=months, current_schema=True)

        return register

    def freshness(self, now: datetime) -> CheckResult | None:
        """The freshness check alone: the newest reading on dev against `now`."""
        return freshness_check(self._newest_reading(), now, SILVER_READINGS)

    def gate(
        self, build: LayerBuild | None, *, now: datetime, check_freshness: bool, extra: list[CheckResult]
    ) -> GateReport:
        """Every gate over what the build wrote (none without a build), plus `extra` results."""
        results: list[CheckResult | None] = list(extra)
        if check_freshness:
            results.append(self.freshness(now))
        if build is None:
            return report(results)
        for result in build.results:
            results.extend(build.schema_results(result))
        silver = build.output(SILVER_READINGS)
        gold = build.output(GOLD_DAILY)
        if silver is not None:
            results.append(continuity_check(silver, SILVER_READINGS))
            if gold is not None:
                results.append(reconciliation_check(silver, gold, GOLD_DAILY))
        return report(results)

    def _newest_reading(self) -> datetime | None:
        if not self.lake.table_exists(SILVER_READINGS):  # before the first build nothing is fresh
            return None
        value = self.lake.column_max(SILVER_READINGS, "dev", "reading_ts")
        return value if isinstance(value, datetime) else None
