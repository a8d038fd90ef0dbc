"""Incremental publish (engine.publish.incremental): hour after hour and day after day, a publisher that copies
only what changed leaves PostgreSQL exactly as one that copies every changed table whole."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandera.pandas as pa
import psycopg
import pytest
from pandera.typing import Series
from psycopg import sql

import engine.publish.publisher as publish_module
from engine.api.facade import Engine
from engine.config import Secret, load_settings
from engine.publish.publications import PUBLICATIONS
from engine.publish.publisher import Publisher, PublishOutcome, PublishStatus
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from schemas.marts import MrtGlucoseOverview
from tests.pgserver import PgServer
from tests.simclock import HOUR, Clock, follow

ZONE = "America/New_York"
OVERVIEW = "marts.mrt_glucose_overview"


def _tables(dsn: str) -> dict[str, tuple[int, str]]:
    """Per api table: its row count and an md5 over its rows in key order (equal md5, equal rows)."""
    found = {}
    with psycopg.connect(dsn) as con:
        for pub in PUBLICATIONS:
            keys = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in pub.key)
            row = con.execute(
                sql.SQL("select count(*), md5(string_agg(t::text, '|' order by {})) from {} as t").format(
                    keys, sql.Identifier("api", pub.target_table)
                )
            ).fetchone()
            assert row is not None
            found[pub.target_table] = (int(row[0]), str(row[1]))
    return found


def _state(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as con:
        return con.execute(
            "select table_name, lake_table, promotion_id, snapshot_id, rows from phlo_meta.publish_state order by 1"
        ).fetchall()


class ImpossibleOverview(MrtGlucoseOverview):
    reading_count: Series[int] = pa.Field(gt=10**9, metadata={"severity": "error"})


def test_increments_publish_what_a_whole_copy_publishes(
    tmp_path: Path, pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(behind_s=30 * HOUR)
    home = tmp_path / "home"
    dsns = {"increments": pg.create_database("increments"), "whole": pg.create_database("whole")}
    outcomes: list[PublishOutcome] = []
    with SimulatorServer(GlucoseSimulator(seed=7, tz=ZONE, clock=clock)) as server:
        env = {
            "PHLO_HOME": str(home),
            "NIGHTSCOUT_URL": server.url,
            "PHLO_TIMEZONE": ZONE,
            "PHLO_INITIAL_DAYS": "93",
            "PHLO_MANAGE_POSTGRES": "false",
        }
        with Engine(
            load_settings(env, config_path=home / "no-config.toml"), clock=follow(server.simulator)
        ) as engine:
            publishers = {
                name: Publisher(
                    dataclasses.replace(engine.settings, postgres_dsn=Secret(dsn)),
                    engine.lake,
                    incremental=name == "increments",
                )
                for name, dsn in dsns.items()
            }
            try:
                # The first run, one hour later, then a day later: the 90-day window moves by a day.
                for step in (0.0, HOUR, 24 * HOUR):
                    clock.now += step
                    run = engine.run_now()
                    assert run.status is RunStatus.SUCCEEDED, run.error
                    promotion = engine.store.last_promotion()
                    assert promotion is not None
                    whole = publishers["whole"].publish(promotion)
                    outcomes.append(publishers["increments"].publish(promotion))
                    assert [t.status for t in outcomes[-1].tables] == [t.status for t in whole.tables]
                    assert [t.rows for t in outcomes[-1].tables] == [t.rows for t in whole.tables]
                    assert _tables(dsns["increments"]) == _tables(dsns["whole"])
                    assert _state(dsns["increments"]) == _state(dsns["whole"])
            finally:
                for publisher in publishers.values():
                    publisher.close()
            # A snapshot the run's gate has just checked is not checked again; any other one is.
            with monkeypatch.context() as patch:
                patch.setitem(publish_module.TABLE_SCHEMAS, OVERVIEW, ImpossibleOverview)
                snapshot = promotion.snapshot(OVERVIEW)
                assert snapshot is not None
                statuses = {}
                for name, gated in (("gated", {OVERVIEW: snapshot}), ("ungated", {})):
                    dsn = pg.create_database(name)
                    publisher = Publisher(
                        dataclasses.replace(engine.settings, postgres_dsn=Secret(dsn)), engine.lake
                    )
                    try:
                        outcome = publisher.publish(promotion, gated=gated)
                    finally:
                        publisher.close()
                    statuses[name] = next(
                        t.status for t in outcome.tables if t.target_table == "glucose_overview"
                    )
            assert statuses == {"gated": PublishStatus.PUBLISHED, "ungated": PublishStatus.BLOCKED}
    # The later publishes copied a part of the readings, not the 90 days again.
    for outcome in outcomes[1:]:
        readings = next(t for t in outcome.tables if t.target_table == "glucose_readings")
        assert readings.status is PublishStatus.PUBLISHED
        assert readings.copied is not None and 0 < readings.copied < readings.rows / 2
