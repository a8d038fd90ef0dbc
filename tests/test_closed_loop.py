"""Closed-loop uploads counted right (issue 18): deletions, uploader identities, bolus calculations
and SMBs, on payloads shaped as Nightscout's own fixtures (cgm-remote-monitor `tests/fixtures/`:
aaps-patterns.json, aaps-single-doc.js, deduplication.js, nightscoutkit-treatments.js,
trio-pipeline.js) and API v3's documented history answer (lib/api3/doc/tutorial.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from tests.test_treatments import build_layers, load_raw, series, sgv

GOLD = "gold.fct_daily_treatment_totals"
DAY = datetime(2024, 1, 18, tzinfo=UTC)

# AndroidAPS: SMB_BURSTS.CORRECTION_SEQUENCE of aaps-patterns.json.
SMBS = [
    {
        "_id": f"65a94a{i:018x}",
        "eventType": "Correction Bolus",
        "insulin": units,
        "isSMB": True,
        "pumpId": 4148 + i,
        "pumpType": "ACCU_CHEK_INSIGHT_BLUETOOTH",
        "pumpSerial": "33013206",
        "date": 1705600000000 + i * 300_000,
        "created_at": (DAY + timedelta(hours=16, minutes=5 * i)).isoformat().replace("+00:00", ".000Z"),
        "type": "NORMAL",
        "isValid": True,
        "app": "AAPS",
    }
    for i, units in enumerate([0.25, 0.30, 0.15])
]
# DEDUPLICATION_TESTS.ORIGINAL and DUPLICATE_SAME_PUMP_KEY: one correction, two _ids.
CORRECTION = {
    "eventType": "Correction Bolus",
    "insulin": 0.5,
    "pumpId": 4148,
    "pumpType": "DANA_R",
    "pumpSerial": "12345",
    "date": 1705600000000,
    "created_at": "2024-01-18T16:00:00.000Z",
    "isValid": True,
    "app": "AAPS",
}
# MEAL_SCENARIO: the bolus, its Bolus Wizard calculation 12.664 s earlier, and the carbs AndroidAPS
# stores apart (moved to the same day).
MEAL_BOLUS = {
    "_id": "65a9100000000000000000b1",
    "eventType": "Meal Bolus",
    "insulin": 8.1,
    "pumpId": 4102,
    "pumpType": "ACCU_CHEK_INSIGHT_BLUETOOTH",
    "pumpSerial": "33013206",
    "date": 1705577112664,
    "created_at": "2024-01-18T11:25:12.664Z",
    "type": "NORMAL",
    "isValid": True,
    "isSMB": False,
    "app": "AAPS",
}
BOLUS_WIZARD = {
    "_id": "65a9100000000000000000c1",
    "eventType": "Bolus Wizard",
    "glucose": 134,
    "glucoseType": "Sensor",
    "carbs": 45,
    "insulin": 8.1,
    "date": 1705577100000,
    "created_at": "2024-01-18T11:25:00.000Z",
    "isValid": True,
    "app": "AAPS",
}
CARBS = {
    "_id": "65a9100000000000000000d1",
    "eventType": "Carb Correction",
    "carbs": 45,
    "date": 1705577100000,
    "created_at": "2024-01-18T11:25:00.000Z",
    "isValid": True,
    "app": "AAPS",
}
# Deleted by the person: Nightscout keeps the document with isValid false (as API v3 deletes).
DELETED_BOLUS = {
    "_id": "65a9100000000000000000e1",
    "eventType": "Correction Bolus",
    "insulin": 5.0,
    "created_at": "2024-01-18T19:00:00.000Z",
    "isValid": False,
    "app": "AAPS",
}


def issue_day() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    readings = series(DAY + timedelta(hours=10), [120] * 24)
    deleted_low = {**sgv(DAY + timedelta(hours=13), 40), "isValid": False}
    treatments = [
        *SMBS,
        {**CORRECTION, "_id": "65a9100000000000000000a1"},
        {**CORRECTION, "_id": "65a9100000000000000000a2"},
        MEAL_BOLUS,
        BOLUS_WIZARD,
        CARBS,
        DELETED_BOLUS,
    ]
    return [*readings, deleted_low], treatments


@pytest.fixture
def engine(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    with Engine(load_settings()) as engine:
        yield engine


def totals(engine: Engine) -> list[tuple[Any, ...]]:
    return engine.query(
        f"select reading_date, round(total_insulin_units, 2), total_carbs_g, bolus_count, carb_entry_count,"
        f" round(automatic_insulin_units, 2) from {GOLD} order by reading_date",
        "dev",
    ).rows


def test_the_issue_day_counts_9_3_units_and_45_g(engine: Engine) -> None:
    readings, treatments = issue_day()
    load_raw(engine, readings, treatments)
    build_layers(engine, None)
    # 0.25 + 0.3 + 0.15 SMBs, the 0.5 correction once, the 8.1 meal bolus once; the 5 U deleted.
    assert totals(engine) == [(date(2024, 1, 18), 9.3, 45.0, 5, 1, 0.7)]
    lowest = engine.query("select min(glucose_mg_dl), count(*) from silver.fct_glucose_readings", "dev").rows
    assert lowest == [(120, 24)]  # the deleted 40 mg/dL reading is no reading
    raw = engine.query("select count(*) filter (where not is_valid) from raw.treatments", "dev").rows
    assert raw == [(1,)]  # raw keeps what the site sent


def test_a_deleted_record_leaves_every_layer_and_its_month_is_rebuilt(engine: Engine) -> None:
    readings, treatments = issue_day()
    load_raw(engine, readings, treatments)
    build_layers(engine, {"2024-01"})
    assert totals(engine)[0][1] == 9.3

    # The person deletes an SMB later: the site serves it again with isValid false and a newer
    # srvModified (API v3's history answer); raw keeps it, every layer drops it.
    deleted = {**SMBS[1], "isValid": False, "srvModified": 1705610000000}
    load_raw(engine, [], [deleted])
    build_layers(engine, {"2024-01"})
    assert totals(engine) == [(date(2024, 1, 18), 9.0, 45.0, 4, 1, 0.4)]
    gone = engine.query(
        "select count(*) from silver.fct_treatments where treatment_id = $id", "dev", {"id": SMBS[1]["_id"]}
    )
    assert gone.rows == [(0,)]


def test_api_v3_history_answer_deletes_a_document_stored_from_api_v1(engine: Engine) -> None:
    """API v3 serves no _id: its identifier is the _id's hex for a document created through v1."""
    bolus = {"_id": "5b0f7124475f5db0824ca73c", "eventType": "Correction Bolus", "insulin": 0.5}
    load_raw(engine, [], [{**bolus, "created_at": "2021-02-11T15:30:04.186Z"}])
    build_layers(engine, None)
    assert totals(engine) == [(date(2021, 2, 11), 0.5, 0.0, 1, 0, 0.0)]
    v3 = {
        "date": 1613057404186,
        "app": "AndroidAPS",
        "eventType": "Correction Bolus",
        "insulin": 0.5,
        "utcOffset": 0,
        "created_at": "2021-02-11T15:30:04.186Z",
        "identifier": bolus["_id"],
        "srvModified": 1613058548149,
        "srvCreated": 1613057523148,
        "subject": "test-admin",
        "modifiedBy": "test-admin",
        "isValid": False,
    }
    load_raw(engine, [], [v3])
    build_layers(engine, None)
    assert totals(engine) == []
    assert engine.query("select count(*), bool_or(is_valid) from raw.treatments", "dev").rows == [(1, False)]


# -- uploader identities before the 60-second rule ------------------------------------------------
# Each pair is one record uploaded twice under two _ids, the second copy 3 minutes later (a phone
# catching up with the pump's clock, a re-upload after a restore): too far apart for the 60-second
# rule, the same record by the identity its uploader gives it.
IDENTITY_COPIES = {
    # AndroidAPS's pump composite key (deduplication.js aapsDuplicatePumpId).
    "aaps pump key": {
        "eventType": "Correction Bolus",
        "insulin": 0.25,
        "type": "SMB",
        "isValid": True,
        "isSMB": True,
        "pumpId": 4148,
        "pumpType": "ACCU_CHEK_INSIGHT_BLUETOOTH",
        "pumpSerial": "33013206",
        "app": "AAPS",
    },
    # Loop's syncIdentifier (deduplication.js loopDuplicateSyncId).
    "loop syncIdentifier": {
        "eventType": "Carb Correction",
        "carbs": 15,
        "syncIdentifier": "loop-sync-abc123",
        "enteredBy": "loop://iPhone",
    },
    # Trio's id (deduplication.js trioDuplicateId).
    "trio id": {
        "eventType": "Meal Bolus",
        "id": "trio-uuid-abc123",
        "insulin": 5.0,
        "carbs": 45,
        "enteredBy": "Trio",
    },
    # xDrip's uuid (its NightscoutUploader finds treatments by find[uuid]).
    "xdrip uuid": {
        "eventType": "Bolus",
        "insulin": 1.5,
        "uuid": "4f1c2a9e-6b7d-4e3a-9c1f-0a2b3c4d5e6f",
        "enteredBy": "xdrip",
    },
    # API v3's identifier: the document read through v1 (its _id and identifier) and through v3
    # (identifier only), the second answer after the person edited the time.
    "api v3 identifier": {
        "eventType": "Correction Bolus",
        "insulin": 0.5,
        "identifier": "5b0f7124-475f-5db0-824c-a73c5eea0975",
        "app": "AndroidAPS",
    },
}


@pytest.mark.parametrize("convention", sorted(IDENTITY_COPIES))
def test_an_uploader_identity_makes_two_uploads_one_record(engine: Engine, convention: str) -> None:
    record = IDENTITY_COPIES[convention]
    first = {**record, "_id": "65a9200000000000000000f1", "created_at": "2024-01-18T08:00:00.000Z"}
    later = {**record, "_id": "65a9200000000000000000f2", "created_at": "2024-01-18T08:03:00.000Z"}
    if convention == "api v3 identifier":
        later = {key: value for key, value in later.items() if key != "_id"}
        later["srvModified"] = 1705565000000
    load_raw(engine, [], [first, later])
    build_layers(engine, None)
    rows = engine.query("select count(*) from bronze.stg_treatments", "dev").rows
    assert rows == [(1,)], convention
    insulin = float(record.get("insulin", 0.0))
    carbs = float(record.get("carbs", 0.0))
    day = totals(engine)[0]
    assert (day[1], day[2]) == (insulin, carbs), convention


def test_different_pump_events_stay_two_records(engine: Engine) -> None:
    """DIFFERENT_PUMP_ID of aaps-patterns.json, minutes apart: two boluses, as the pump says."""
    base = IDENTITY_COPIES["aaps pump key"]
    load_raw(
        engine,
        [],
        [
            {**base, "_id": "65a9200000000000000000f1", "created_at": "2024-01-18T08:00:00.000Z"},
            {**base, "_id": "65a9200000000000000000f2", "pumpId": 4149, "created_at": "2024-01-18T08:03:00Z"},
        ],
    )
    build_layers(engine, None)
    assert totals(engine) == [(date(2024, 1, 18), 0.5, 0.0, 2, 0, 0.5)]


# -- bolus calculations ----------------------------------------------------------------------------


def test_a_bolus_calculation_sent_alone_counts_its_insulin_and_carbs(engine: Engine) -> None:
    """The Nightscout careportal's Bolus Wizard (an injection logged with its calculation): the only
    record of the dose."""
    load_raw(engine, [], [BOLUS_WIZARD])
    build_layers(engine, None)
    assert totals(engine) == [(date(2024, 1, 18), 8.1, 45.0, 1, 1, 0.0)]


def test_a_calculation_two_minutes_from_another_dose_is_its_own(engine: Engine) -> None:
    """A calculation 5 minutes before a bolus of another size describes a dose nobody else sent."""
    later_bolus = {**MEAL_BOLUS, "created_at": "2024-01-18T11:30:00.000Z", "insulin": 6.0}
    load_raw(engine, [], [BOLUS_WIZARD, later_bolus, CARBS])
    build_layers(engine, None)
    # The calculation's 8.1 U counts (no delivered bolus of 8.1 U near it), its 45 g do not (the
    # carb entry at the same second holds them).
    assert totals(engine) == [(date(2024, 1, 18), 14.1, 45.0, 2, 1, 0.0)]


def test_a_priming_bolus_is_no_insulin_given(engine: Engine) -> None:
    """AndroidAPS uploads the pump's priming (type PRIMING): insulin into the cannula, not the body."""
    priming = {
        **MEAL_BOLUS,
        "_id": "65a9100000000000000000b9",
        "eventType": "Correction Bolus",
        "type": "PRIMING",
    }
    load_raw(engine, [], [priming, *SMBS])
    build_layers(engine, None)
    assert totals(engine) == [(date(2024, 1, 18), 0.7, 0.0, 3, 0, 0.7)]


def test_loop_automatic_boluses_are_flagged(engine: Engine) -> None:
    """NightscoutKit's BolusNightscoutTreatment: `automatic` tells the loop's boluses from the person's."""
    loop = {"eventType": "Correction Bolus", "type": "normal", "enteredBy": "loop://iPhone", "duration": 0}
    load_raw(
        engine,
        [],
        [
            {
                **loop,
                "_id": "65a9300000000000000000a1",
                "created_at": "2024-01-18T08:00:00Z",
                "insulin": 0.4,
                "programmed": 0.4,
                "automatic": True,
                "syncIdentifier": "loop-dose-1",
            },
            {
                **loop,
                "_id": "65a9300000000000000000a2",
                "created_at": "2024-01-18T12:00:00Z",
                "insulin": 3.0,
                "programmed": 3.0,
                "automatic": False,
                "syncIdentifier": "loop-dose-2",
            },
        ],
    )
    build_layers(engine, None)
    assert totals(engine) == [(date(2024, 1, 18), 3.4, 0.0, 2, 0, 0.4)]
    mart = engine.query(
        "select treatment_id, is_automatic from marts.mrt_medication_effectiveness order by 1", "dev"
    ).rows
    assert mart == [("65a9300000000000000000a1", True), ("65a9300000000000000000a2", False)]


# -- a lake written before these columns -----------------------------------------------------------


def declared_before(column: str) -> Any:
    """raw.treatments as a release declared it before `column` and the columns after it."""
    import dataclasses

    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform

    from engine.ingest.tables import TREATMENTS

    fields = TREATMENTS.schema.fields[: TREATMENTS.schema.fields.index(TREATMENTS.schema.find_field(column))]
    schema = Schema(*fields)
    month = schema.find_field("treatment_month")
    spec = PartitionSpec(
        PartitionField(
            source_id=month.field_id, field_id=1000, transform=IdentityTransform(), name="treatment_month"
        )
    )
    arrow = pa.schema([TREATMENTS.arrow_schema.field(f.name) for f in fields])
    return dataclasses.replace(TREATMENTS, schema=schema, partition_spec=spec, arrow_schema=arrow)


def test_a_home_from_before_the_basal_columns_builds_and_reads_its_day(
    engine: Engine, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade: raw.treatments stored by a release without `percent` and `amount`. The next build
    reads them as null (the models read a branch with the table's current schema), and a gold table
    of that release, without the basal column, reads as basal unknown rather than an SQL error."""
    from engine.api.treatment_reads import DAILY_TREATMENTS, load_daily_treatments
    from engine.ingest.sources import TREATMENTS_SOURCE

    readings, treatments = issue_day()
    old = declared_before("percent")
    engine.lake.ensure_table(old)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    stored = TREATMENTS_SOURCE.validate_batch(treatments, run_id="old", source="t", now=now).valid
    engine.lake.merge(old, stored.select(old.arrow_schema.names))
    load_raw(engine, readings, [])  # the new release declares its tables: raw.treatments gains columns
    build_layers(engine, None)
    assert totals(engine) == [(date(2024, 1, 18), 9.3, 45.0, 5, 1, 0.7)]

    built = engine.lake.read_arrow(DAILY_TREATMENTS, "dev")
    monkeypatch.setenv("PHLO_HOME", str(home / "older"))
    with Engine(load_settings()) as older:
        narrow = built.drop_columns([c for c in built.column_names if "basal" in c or "daily_dose" in c])
        older.lake.write_model(DAILY_TREATMENTS, narrow, partition_by="reading_month")
        (day,) = load_daily_treatments(older, "dev", date(2024, 1, 18), date(2024, 1, 18))
    assert (round(day.insulin_units, 2), day.basal_units) == (9.3, None)


def test_a_lake_written_before_the_new_raw_columns_gains_them(tmp_path: Path) -> None:
    """raw.treatments as the release before declared it (no v3 or uploader columns): ensure_table
    adds the columns, the stored rows read them as null, and new rows write them."""
    import dataclasses

    import pyarrow as pa
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform

    from engine.ingest.sources import TREATMENTS_SOURCE
    from engine.ingest.tables import TREATMENTS
    from engine.lake.store import Lake

    old_fields = TREATMENTS.schema.fields[
        : TREATMENTS.schema.fields.index(TREATMENTS.schema.find_field("_phlo_run_id")) + 1
    ]
    old_schema = Schema(*old_fields)
    month = old_schema.find_field("treatment_month")
    old = dataclasses.replace(
        TREATMENTS,
        schema=old_schema,
        partition_spec=PartitionSpec(
            PartitionField(
                source_id=month.field_id, field_id=1000, transform=IdentityTransform(), name="treatment_month"
            )
        ),
        arrow_schema=pa.schema([TREATMENTS.arrow_schema.field(f.name) for f in old_fields]),
    )
    lake = Lake(tmp_path / "lake")
    lake.ensure_table(old)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    before = TREATMENTS_SOURCE.validate_batch([MEAL_BOLUS], run_id="old", source="t", now=now).valid
    lake.merge(old, before.select(old.arrow_schema.names))

    lake.ensure_table(TREATMENTS)
    lake.merge(
        TREATMENTS, TREATMENTS_SOURCE.validate_batch([DELETED_BOLUS], run_id="new", source="t", now=now).valid
    )
    rows = lake.read_arrow(TREATMENTS.name, "dev").sort_by("_id").select(["_id", "is_valid", "pump_serial"])
    assert rows.to_pylist() == [
        {"_id": MEAL_BOLUS["_id"], "is_valid": None, "pump_serial": None},
        {"_id": DELETED_BOLUS["_id"], "is_valid": False, "pump_serial": None},
    ]
