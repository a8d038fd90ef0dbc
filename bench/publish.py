"""Benchmark of publishing to PostgreSQL: a year of daily metrics plus 90 days of readings, then hourly runs.

Builds a lake in a temporary PHLO_HOME by a 365-day backfill from the simulator, publishes it to
PHLO_POSTGRES_DSN when set, else to the private cluster phlo-tui manages, and prints seconds and
rows/s. Asserts nothing. Run: `uv run python -m bench.publish`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from engine.api.facade import Engine
from engine.config import load_settings
from engine.publish.pgcluster import ROOT_CLUSTERS
from engine.publish.publications import PUBLICATIONS, Publication
from engine.publish.publisher import Publisher, PublishOutcome
from engine.publish.swap import _copy_rows, _create_staging
from engine.runs.records import PromotionRecord, RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

HOUR = 3600.0
HOURLY_RUNS = 5


class Clock:
    """The simulator's 'now', a few hours behind the real clock so that hourly runs can move it on."""

    def __init__(self) -> None:
        self.now = time.time() - (HOURLY_RUNS + 1) * HOUR

    def __call__(self) -> float:
        return self.now


def report(label: str, outcome: PublishOutcome, seconds: float) -> None:
    print(f"{label:<44} {seconds:7.3f} s")
    for table in outcome.tables:
        print(
            f"    {table.target_table:<26} {table.status.value:<10} {table.rows:>8,} rows {table.seconds:7.3f} s"
        )


def copy_rate(publisher: Publisher, pub: Publication, record: PromotionRecord) -> tuple[int, float]:
    """Rows and seconds of the binary COPY alone, into a staging table that is rolled back.

    Uses the publisher's internals on purpose: a publish also reads, validates and swaps.
    """
    snapshot = record.snapshot(pub.lake_table)
    assert snapshot is not None
    candidate = publisher._read_candidate(pub, snapshot)
    conn = publisher._connection()
    with conn.transaction(force_rollback=True):
        _create_staging(conn, candidate)
        started = time.perf_counter()
        _copy_rows(conn, candidate)
        seconds = time.perf_counter() - started
    return candidate.rows.num_rows, seconds


def promotion(engine: Engine) -> PromotionRecord:
    record = engine.store.last_promotion()
    assert record is not None, "the run promoted nothing"
    return record


def main() -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="phlo-bench-publish-") as tmp:
        home = Path(tmp) / "home"
        with SimulatorServer(GlucoseSimulator(seed=42, clock=clock)) as server:
            env = {
                "PHLO_HOME": str(home),
                "NIGHTSCOUT_URL": server.url,
                "PHLO_TIMEZONE": "Europe/Berlin",
                "PHLO_LOOKBACK_MINUTES": "0",
            }
            if os.environ.get("PHLO_POSTGRES_DSN"):
                env["PHLO_POSTGRES_DSN"] = os.environ["PHLO_POSTGRES_DSN"]
            with Engine(load_settings(env, config_path=home / "no-config.toml")) as engine:
                started = time.perf_counter()
                run = engine.backfill((date.today() - timedelta(days=365)).isoformat())
                assert run.status is RunStatus.SUCCEEDED, run.error
                print(f"{'lake: 365-day backfill':<44} {time.perf_counter() - started:7.3f} s")
                publisher = Publisher(engine.settings, engine.lake)
                try:
                    target = publisher.describe_target()
                    print(f"target: {target['kind']} {target.get('dsn') or target.get('data_dir')}")
                    if target["kind"] == "managed":
                        started = time.perf_counter()
                        assert publisher.cluster is not None
                        publisher.cluster.ensure_running()
                        print(
                            f"{'private cluster: initdb and start':<44} {time.perf_counter() - started:7.3f} s"
                        )

                    record = promotion(engine)
                    started = time.perf_counter()
                    outcome = publisher.publish(record)
                    seconds = time.perf_counter() - started
                    report("first publish (connect, prepare, 4 tables)", outcome, seconds)
                    print(f"{'  end to end':<44} {outcome.published_rows / seconds:11,.0f} rows/s")

                    for pub in PUBLICATIONS:
                        rows, copy = copy_rate(publisher, pub, record)
                        print(
                            f"  binary COPY into staging: {pub.target_table:<24} {rows:>8,} rows "
                            f"{copy:7.3f} s {rows / copy:11,.0f} rows/s"
                        )

                    started = time.perf_counter()
                    outcome = publisher.publish(record)
                    report("same promotion again (all unchanged)", outcome, time.perf_counter() - started)

                    hourly = []
                    for hour in range(1, HOURLY_RUNS + 1):
                        clock.now += HOUR
                        run = engine.run_now()
                        assert run.status is RunStatus.SUCCEEDED, run.error
                        started = time.perf_counter()
                        outcome = publisher.publish(promotion(engine))
                        seconds = time.perf_counter() - started
                        hourly.append(seconds)
                        report(f"incremental publish after new hour {hour}", outcome, seconds)
                    print(
                        f"{'incremental publish, median of ' + str(HOURLY_RUNS):<44} "
                        f"{statistics.median(hourly):7.3f} s (target < 0.5 s)"
                    )
                finally:
                    publisher.close()
                    cluster = publisher.cluster
                    if cluster is not None and cluster.cluster_dir.is_relative_to(ROOT_CLUSTERS):
                        # As root the private cluster lives outside the (temporary) home.
                        shutil.rmtree(cluster.cluster_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
