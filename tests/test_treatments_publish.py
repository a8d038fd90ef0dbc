"""The medication-effectiveness mart published to a real PostgreSQL and read as web_anon."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg
import pytest

from engine.api.facade import Engine
from engine.config import Secret, load_settings
from engine.errors import PhloError
from engine.publish.publications import Publication, discover_publications
from engine.publish.publisher import Publisher, PublishStatus
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.pgserver import PgServer

ZONE = "Europe/Paris"
COLUMNS = (
    "treatment_id, bolus_local_ts, reading_date, event_type, insulin_units, carbs_g, glucose_before, "
    "glucose_after, glucose_reduction, minutes_to_min_after, min_glucose_after, hypo_within_4h, reading_month"
)


def test_publications_come_from_the_model_headers() -> None:
    found = {p.target_table: p for p in discover_publications()}
    assert found["medication_effectiveness"] == Publication(
        "marts.mrt_medication_effectiveness", "medication_effectiveness", ("treatment_id",)
    )
    # The publications that were declared in Python keep their API names, keys and window.
    assert found["glucose_overview"].key == ("reading_date",)
    assert found["glucose_hourly_patterns"].key == ("hour_of_day",)
    assert found["daily_glucose_metrics"].lake_table == "gold.fct_daily_glucose_metrics"
    assert found["glucose_readings"] == Publication(
        "silver.fct_glucose_readings", "glucose_readings", ("entry_id",), days=90
    )


def test_a_malformed_publish_header_names_its_file(tmp_path: Path) -> None:
    for layer in ("bronze", "silver", "gold", "marts"):
        (tmp_path / layer).mkdir()
    (tmp_path / "marts" / "mrt_x.sql").write_text(
        "-- materialized: table\n-- publish: x keys=a\nselect 1 as a\n"
    )
    with pytest.raises(PhloError, match=r"mrt_x.sql: malformed publish header"):
        discover_publications(tmp_path)


def test_effectiveness_is_published_and_readable_as_web_anon(tmp_path: Path, pg: PgServer) -> None:
    home = tmp_path / "home"
    with SimulatorServer(GlucoseSimulator(seed=5, tz=ZONE)) as server:
        env = {
            "PHLO_HOME": str(home),
            "NIGHTSCOUT_URL": server.url,
            "PHLO_TIMEZONE": ZONE,
            "PHLO_INITIAL_DAYS": "10",
            "PHLO_LOOKBACK_MINUTES": "0",
            "PHLO_MANAGE_POSTGRES": "false",
        }
        with Engine(load_settings(env, config_path=home / "no-config.toml")) as engine:
            run = engine.run_now()
            assert run.status is RunStatus.SUCCEEDED, run.error
            promotion = engine.store.last_promotion()
            assert promotion is not None
            lake_rows = engine.query(
                f"select {COLUMNS} from marts.mrt_medication_effectiveness order by treatment_id", "main"
            ).rows
            assert len(lake_rows) > 10 * 3
            dsn = pg.create_database("effectiveness")
            settings = dataclasses.replace(engine.settings, postgres_dsn=Secret(dsn))
            publisher = Publisher(settings, engine.lake)
            try:
                outcome = publisher.publish(promotion, run_id=run.id)
            finally:
                publisher.close()
    published = {t.target_table: t for t in outcome.tables}
    assert published["medication_effectiveness"].status is PublishStatus.PUBLISHED
    assert published["medication_effectiveness"].rows == len(lake_rows)
    with psycopg.connect(pg.dsn(dbname="effectiveness")) as con, con.transaction():
        con.execute("set local role web_anon")
        rows = con.execute(
            f"select {COLUMNS} from api.medication_effectiveness order by treatment_id"
        ).fetchall()
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'api' and table_name = 'medication_effectiveness'"
            ).fetchall()
        )
    assert rows == [tuple(r) for r in lake_rows]
    assert types["bolus_local_ts"] == "timestamp without time zone"
    assert types["reading_date"] == "date"
    assert types["hypo_within_4h"] == "boolean"
    assert types["glucose_reduction"] == "double precision"
    with psycopg.connect(pg.dsn(dbname="effectiveness")) as con:
        key = con.execute(
            "select kcu.column_name from information_schema.table_constraints tc "
            "join information_schema.key_column_usage kcu using (constraint_schema, constraint_name) "
            "where tc.table_schema = 'api' and tc.table_name = 'medication_effectiveness' "
            "and tc.constraint_type = 'PRIMARY KEY'"
        ).fetchall()
    assert key == [("treatment_id",)]
    with (
        psycopg.connect(pg.dsn(dbname="effectiveness")) as con,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        con.transaction(),
    ):
        con.execute("set local role web_anon")
        con.execute("delete from api.medication_effectiveness")
