"""Clarity and LibreView exports through the whole pipeline: real Iceberg, DuckDB, run store, CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.api.facade import Engine
from engine.clock import NOW_ENV
from engine.config import load_settings
from engine.ingest.tables import RAW_TABLES
from engine.runs.records import RunStatus
from engine.sim.export import PATIENT, ExportOptions, write_export

UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
CLARITY_HEADER = (
    "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,Source Device ID,"
    "Glucose Value (mmol/L),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),"
    "Glucose Rate of Change (mmol/L/min),Transmitter Time (Long Integer),Transmitter ID"
)


def rows(engine: Engine, sql: str, branch: str = "dev") -> list[tuple[object, ...]]:
    return engine.query(sql, branch).rows


def counts_add_up(summary: dict[str, object]) -> bool:
    parts = [summary[k] for k in ("stored", "unchanged", "quarantined", "skipped")]
    return sum(int(p) for p in parts) == summary["lines"]  # type: ignore[call-overload]


AFTER_THE_FILES = "2026-12-01T00:00:00+00:00"
"""These files hold fixed days up to 2026-11-20 (a Berlin spring-forward among them): the engine's data
time is pinned after them, wherever the suite's own clock (tests/simclock.py) stands, so that no
reading is "in the future"."""


@pytest.fixture(autouse=True)
def data_time_after_the_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NOW_ENV, AFTER_THE_FILES)


@pytest.fixture
def engine(home: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("PHLO_TIMEZONE", "Europe/Berlin")
    with Engine(load_settings()) as engine:
        yield engine


def test_clarity_import_reimport_and_overlap_store_nothing_twice(
    engine: Engine, home: Path, tmp_path: Path
) -> None:
    first = write_export(
        "clarity", tmp_path / "CLARITY_Export_Example_Sam.csv", days=6, until=UTC_DAY(14), tz="Europe/Berlin"
    )
    run = engine.import_file(first.path)
    assert run.status is RunStatus.SUCCEEDED, run.error
    s = run.summary
    assert s["lines"] == first.lines and counts_add_up(s) and s["quarantined"] == 0 and s["stored"] > 0
    assert run.params["timezone"] == "Europe/Berlin" and run.params["format"] == "clarity"
    readings = rows(engine, "select count(*) from silver.fct_glucose_readings", "main")[0][0]
    assert readings == first.readings

    again = engine.import_file(first.path)
    assert (
        again.summary["stored"] == 0
        and again.summary["unchanged"] == s["stored"]
        and counts_add_up(again.summary)
    )

    # Four more days, two of them already imported: only the new lines are stored.
    second = write_export("clarity", tmp_path / "second.csv", days=4, until=UTC_DAY(16), tz="Europe/Berlin")
    overlap = engine.import_file(second.path)
    assert counts_add_up(overlap.summary)
    assert 0 < overlap.summary["stored"] < overlap.summary["lines"] and overlap.summary["unchanged"] > 0
    total = rows(engine, "select count(*), count(distinct _id) from raw.import_records")[0]
    assert total[0] == total[1]
    assert rows(engine, "select count(*) from silver.fct_glucose_readings", "main")[0][0] == len(
        rows(engine, "select distinct record_ts from raw.import_records where record_kind = 'reading'")
    )

    # The patient's name (in the file's settings rows and its name) is stored nowhere.
    for tdef in RAW_TABLES:
        dumped = json.dumps(rows(engine, f"select * from {tdef.name}"), default=str)
        assert PATIENT[0] not in dumped and PATIENT[1] not in dumped, tdef.name
    store = sqlite3.connect(home / "runs.sqlite")
    dump = "\n".join(store.iterdump())
    store.close()
    assert PATIENT[1] not in dump and "CLARITY_Export" not in dump


def UTC_DAY(day: int) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC)


def test_mmol_band_edges_stay_in_their_bands_and_raw_keeps_the_original(
    engine: Engine, tmp_path: Path
) -> None:
    values = ["3.0", "3.9", "10.0", "13.9"]
    lines = [CLARITY_HEADER] + [
        f"{i},2026-11-10T08:{5 * i:02d}:00,EGV,,,,g6,{v},,,,,{100 * i},T1"
        for i, v in enumerate(values, start=1)
    ]
    path = tmp_path / "edges.csv"
    path.write_text("\n".join(lines) + "\n")
    run = engine.import_file(path)
    assert run.status in (RunStatus.SUCCEEDED, RunStatus.HELD), run.error
    silver = rows(
        engine, "select glucose_mg_dl, glucose_category from silver.fct_glucose_readings order by reading_ts"
    )
    assert silver == [(54, "low"), (70, "in_range"), (180, "in_range"), (250, "high")]
    raw = rows(
        engine, "select value_text, value_unit, glucose_mg_dl from raw.import_records order by record_ts"
    )
    assert raw == [
        ("3.0", "mmol/L", 54),
        ("3.9", "mmol/L", 70),
        ("10.0", "mmol/L", 180),
        ("13.9", "mmol/L", 250),
    ]


def test_a_reading_nightscout_also_has_collapses_in_bronze(engine: Engine, tmp_path: Path) -> None:
    at = datetime(2026, 11, 10, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
    nightscout = tmp_path / "entries.json"
    nightscout.write_text(
        json.dumps(
            [
                {
                    "_id": "a" * 24,
                    "type": "sgv",
                    "sgv": 120,
                    "date": int(at.timestamp() * 1000) + 20_000,
                    "device": "share2",
                },
                {
                    "_id": "b" * 24,
                    "type": "sgv",
                    "sgv": 130,
                    "date": int(at.timestamp() * 1000) + 320_000,
                    "device": "share2",
                },
            ]
        )
    )
    assert engine.import_file(nightscout).status is RunStatus.SUCCEEDED
    clarity = tmp_path / "c.csv"
    clarity.write_text(
        CLARITY_HEADER.replace("mmol/L", "mg/dL")
        + "\n1,2026-11-10T08:00:00,EGV,,,,g6,120,,,,,1,T1\n2,2026-11-10T08:05:00,EGV,,,,g6,131,,,,,2,T1\n"
    )
    engine.import_file(clarity)
    assert rows(engine, "select count(*) from raw.glucose_entries")[0][0] == 4
    kept = rows(engine, "select glucose_mg_dl from bronze.stg_glucose_entries order by glucose_mg_dl")
    assert kept == [(120,), (130,), (131,)]  # same value within 60 s: once; 130 and 131 differ


def test_libreview_scans_are_markers_and_doses_reach_the_effectiveness_mart(
    engine: Engine, tmp_path: Path
) -> None:
    options = ExportOptions(units="mmol/L", date_order="mdy", serial_at_end=True)
    written = write_export(
        "libreview",
        tmp_path / "Sam_glucose.csv.gz",
        days=5,
        until=UTC_DAY(14),
        tz="Europe/Berlin",
        options=options,
    )
    run = engine.import_file(written.path)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert counts_add_up(run.summary) and run.summary["skipped_by_reason"]["scans"] > 0
    scans = rows(engine, "select count(*) from raw.import_records where record_kind = 'scan'")[0][0]
    assert scans == run.summary["skipped_by_reason"]["scans"]
    # Metrics read historic readings only: silver holds exactly them.
    assert rows(engine, "select count(*) from silver.fct_glucose_readings", "main")[0][0] == written.readings
    boluses = rows(engine, "select count(*) from marts.mrt_medication_effectiveness", "main")[0][0]
    rapid = rows(engine, "select count(*) from raw.treatments where event_type = 'Correction Bolus'")[0][0]
    assert boluses == rapid > 0
    long_acting = rows(
        engine,
        "select count(*) from bronze.stg_treatments where event_type = 'Long-Acting Insulin' and not is_bolus",
    )
    assert long_acting[0][0] == 5


def test_spring_gap_is_a_warning_check_of_the_run(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "spring.csv"
    path.write_text(
        CLARITY_HEADER.replace("mmol/L", "mg/dL")
        + "\n1,2026-03-29T01:55:00,EGV,,,,g6,120,,,,,1,T1\n2,2026-03-29T02:05:00,EGV,,,,g6,121,,,,,2,T1\n"
    )
    run = engine.import_file(path)
    checks = {c.check: c for c in engine.quality(run.id)}
    assert (
        checks["local_time_exists"].severity == "warning" and checks["local_time_exists"].failing_count == 1
    )


def phlo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_cli_simulate_export_then_import_with_a_zone(home: Path, tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    export = tmp_path / "libre.csv"
    args = (
        "simulate",
        "--export",
        "libreview",
        "--days",
        "2",
        "--until",
        "2026-11-10",
        "--date-order",
        "mdy",
    )
    written = phlo(*args, str(export), env={"PHLO_TIMEZONE": "America/Chicago"})
    assert written.returncode == 0, written.stderr
    assert "wrote" in written.stdout and export.read_text().count("Generated by") == 1
    # PHLO_TIMEZONE is UTC here: --timezone reads the file's local times in Chicago.
    imported = phlo("import", str(export), "--timezone", "America/Chicago", "--json", env={})
    assert imported.returncode == 0, imported.stderr
    run = json.loads(imported.stdout)
    assert run["params"]["timezone"] == "America/Chicago" and run["params"]["date_order"] == "mdy"
    query = "select local_time, record_ts from raw.import_records order by record_ts limit 1"
    listed = phlo("sql", query, "--branch", "dev", "--json", env={})
    (first,) = json.loads(listed.stdout)
    local = datetime.strptime(first["local_time"], "%m-%d-%Y %H:%M").replace(
        tzinfo=ZoneInfo("America/Chicago")
    )
    assert datetime.fromisoformat(first["record_ts"]) == local
    wrong = phlo("import", str(export), "--format", "clarity", env={})
    assert (
        wrong.returncode == 1
        and "no Dexcom Clarity header" in wrong.stderr
        and "Traceback" not in wrong.stderr
    )


def test_a_reimport_in_another_zone_moves_readings_across_the_month_end_without_copies(
    engine: Engine, tmp_path: Path
) -> None:
    # An import's ids hold local times, so the lake searches only the neighbouring months for rows
    # a re-import moves (Lake.merge time_keyed). Read in Tokyo, the file's first hours lie in October;
    # read again in Berlin, the whole file lies in November: those rows move to a partition the first
    # import left alone, and October is emptied.
    export = write_export("clarity", tmp_path / "month-end.csv", days=1, until=UTC_DAY(2), tz="Europe/Berlin")
    first = engine.import_file(export.path, timezone="Asia/Tokyo")
    assert first.status is RunStatus.SUCCEEDED, first.error
    tables = (("raw.import_records", "record_month"), ("raw.glucose_entries", "reading_month"))
    months = "select count(distinct {1}) from {0}"
    assert [rows(engine, months.format(*table))[0][0] for table in tables] == [2, 2]
    again = engine.import_file(export.path)
    assert again.status is RunStatus.SUCCEEDED, again.error
    assert again.summary["stored"] > 0
    for table, month in tables:
        total, distinct, months_left = rows(
            engine, f"select count(*), count(distinct _id), count(distinct {month}) from {table}"
        )[0]
        assert total == distinct and months_left == 1, table
    assert rows(engine, "select count(*) from silver.fct_glucose_readings", "main")[0][0] == export.readings
