"""One test per defect the hardening suite found, on the path a user hits."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.ingest.extjson import plain_record
from engine.ingest.sources import SOURCES
from engine.ingest.tables import RAW_TABLES
from engine.ingest.validation import validate_glucose_entries
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from schemas import TABLE_SCHEMAS
from tests.pgserver import PgServer, server_bindir
from tests.simclock import START, START_S

pytestmark = pytest.mark.hardening

NOW_MS = int(START_S * 1000)


def _entries(count: int) -> list[dict[str, object]]:
    return [
        {"_id": f"{i:024x}", "type": "sgv", "date": NOW_MS - (count - i) * 300_000, "sgv": 100 + i % 50}
        for i in range(count)
    ]


def test_import_needs_no_nightscout_site(home: Path, tmp_path: Path) -> None:
    # Found by the fuzz tests: `phlo-tui import` refused to start without NIGHTSCOUT_URL.
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_entries(30)))
    with Engine(load_settings()) as engine:
        run = engine.import_file(export)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.summary["stored"] == 30


def test_a_lone_surrogate_does_not_fail_the_batch(home: Path, tmp_path: Path) -> None:
    # Found by the fuzz tests: one "\ud800" escape anywhere in an entry (JSON allows it, UTF-8
    # cannot hold it) failed the validate step, so every run re-fetching it failed too.
    entries = _entries(60)
    entries[3]["device"] = "xDrip\ud959"
    entries[5]["\udfff"] = "unknown key"
    entries[7]["_id"] = "\ud800"
    export = tmp_path / "export.json"
    export.write_text(json.dumps(entries))
    with Engine(load_settings()) as engine:
        run = engine.import_file(export)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.summary["stored"] == 60
        devices = engine.query("select device from raw.glucose_entries where device is not null", "main")
    assert devices.rows == [("xDrip\ufffd",)]


class _NulSimulator(GlucoseSimulator):
    """The simulator's trace with U+0000 in the text fields of every tenth sgv entry and of every
    bolus, as a misbehaving uploader could send; remembers the ids it changed (without the NUL)."""

    def __init__(self) -> None:
        super().__init__(seed=11)
        self.entry_ids: set[str] = set()
        self.bolus_ids: set[str] = set()

    def entries(self, **query: Any) -> list[dict[str, Any]]:
        found = super().entries(**query)
        for entry in found:
            if entry.get("type") == "sgv" and entry["date"] // 300_000 % 10 == 0:
                self.entry_ids.add(entry["_id"])
                entry["_id"] = entry["_id"][:12] + "\x00" + entry["_id"][12:]
                entry["device"] = "\x00" + entry["device"].replace("-", "-\x00")
                entry["dateString"] += "\x00"
                if "direction" in entry:
                    entry["direction"] += "\x00"
        return found

    def treatments(self, **query: Any) -> list[dict[str, Any]]:
        found = super().treatments(**query)
        for treatment in found:
            if "Bolus" in treatment["eventType"] and "created_at" in treatment:
                self.bolus_ids.add(treatment["_id"])
                treatment["_id"] += "\x00"
                treatment["eventType"] = treatment["eventType"].replace(" ", "\x00 ")
                treatment["enteredBy"] = "\x00" + treatment["enteredBy"]
                treatment["notes"] = "pre-bolus\x00"
        return found


@pytest.mark.skipif(server_bindir() is None, reason="PostgreSQL server binaries are not installed")
def test_a_nul_character_in_text_neither_blocks_publishing_nor_loses_the_reading(tmp_path: Path) -> None:
    # Found in review: Iceberg stores U+0000 but PostgreSQL text cannot, so a NUL in a device name
    # blocked the publish of every table carrying it, on every run from then on.
    bindir = server_bindir()
    assert bindir is not None
    pg = PgServer(bindir).start()
    simulator = _NulSimulator()
    try:
        with SimulatorServer(simulator) as site:
            env = {
                "PHLO_HOME": str(tmp_path / "home"),
                "NIGHTSCOUT_URL": site.url,
                "PHLO_TIMEZONE": "UTC",
                "PHLO_INITIAL_DAYS": "3",
                "PHLO_MANAGE_POSTGRES": "false",
                "PHLO_POSTGRES_DSN": pg.create_database("nul"),
            }
            with Engine(load_settings(env, config_path=tmp_path / "no-config.toml")) as engine:
                run = engine.run_now()
                assert run.status is RunStatus.SUCCEEDED, run.error
                assert set(run.summary["publish"].values()) == {"published"}, run.summary["publish"]
                assert run.summary["sources"]["entries"]["quarantined"] == 0
                for table in [t.name for t in RAW_TABLES] + list(TABLE_SCHEMAS):
                    rows = engine.lake.read_arrow(table, "main")
                    for name in rows.column_names:
                        if pa.types.is_string(rows[name].type):
                            assert pc.sum(pc.match_substring(rows[name], "\x00")).as_py() in (0, None), name
                readings = engine.query("select count(*) from silver.fct_glucose_readings", "main").rows
                kept = {entry_id.replace("\x00", "") for entry_id in simulator.entry_ids}
                boluses = {treatment_id.replace("\x00", "") for treatment_id in simulator.bolus_ids}
                assert kept and boluses
                raw_ids = set(engine.lake.read_arrow("raw.glucose_entries", "main")["_id"].to_pylist())
                assert kept <= raw_ids  # every reading is stored, under its id without the NUL
                silver_ids = engine.lake.read_arrow("silver.fct_glucose_readings", "main")["entry_id"]
                in_silver = len(kept & set(silver_ids.to_pylist()))
        with psycopg.connect(pg.dsn(dbname="nul")) as con:
            published = con.execute("select count(*) from api.glucose_readings").fetchall()
            devices = con.execute(
                "select distinct device from api.glucose_readings where entry_id = any(%s)", (list(kept),)
            ).fetchall()
            found = con.execute(
                "select count(*) from api.glucose_readings where entry_id = any(%s)", (list(kept),)
            ).fetchall()
            events = con.execute(
                "select distinct event_type from api.medication_effectiveness where treatment_id = any(%s)",
                (list(boluses),),
            ).fetchall()
        assert published == readings
        assert devices == [("xDrip-DexcomG6",)]
        assert found == [(in_silver,)] and in_silver > len(kept) / 2  # silver drops error codes and copies
        assert events and {e for (e,) in events} <= {
            "Meal Bolus",
            "Bolus Wizard",
            "Snack Bolus",
            "Correction Bolus",
        }
    finally:
        pg.cleanup()


def test_ids_that_differ_only_by_a_nul_are_one_id() -> None:
    # Validation removes NUL before its checks, so uniqueness sees the ids that are stored.
    entries: list[object] = _entries(3)
    with_nul = f"{1:024x}"[:12] + "\x00" + f"{1:024x}"[12:]
    entries.append({**_entries(3)[1], "_id": with_nul, "sgv": 250})
    batch = validate_glucose_entries(entries, run_id="r", source="test", now=START)
    assert batch.valid["_id"].to_pylist() == [f"{i:024x}" for i in range(3)]
    quarantined = batch.quarantine.to_pylist()
    assert [(q["entry_id"], q["check"]) for q in quarantined] == [(f"{1:024x}", "_id_unique")]
    assert "conflicting duplicate of the entry at position 1" in quarantined[0]["reason"]
    assert json.loads(quarantined[0]["payload"])["_id"] == with_nul  # as sent
    # Columns of other values, or of strings mixed with them, keep their values as sent.
    mixed: list[object] = [
        {**e, "device": device} for e, device in zip(_entries(2), [5, "G\x006"], strict=True)
    ]
    for records in (mixed, [{**_entries(1)[0], "_id": False}]):
        for source in SOURCES:
            batch = source.validate_batch(records, run_id="r", source="test", now=START)
            assert batch.valid.num_rows + batch.quarantine.num_rows == len(records)
    batch = validate_glucose_entries(mixed, run_id="r", source="test", now=START)
    assert batch.valid["device"].to_pylist() == [None, "G6"]


def _mongo_forms(entry: dict[str, Any], form: int) -> dict[str, Any]:
    """`entry` as mongoexport writes it: relaxed v2 (its default), canonical v2, or legacy v1 (< 4.2)."""
    ms = int(str(entry["date"]))
    iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    doc = {**entry, "_id": {"$oid": entry["_id"]}, "created_at": {"$date": iso}}
    if form == 1:
        doc.update(
            date={"$numberLong": str(ms)},
            sgv={"$numberInt": str(entry["sgv"])},
            filtered={"$numberDouble": "123456.5"},
            created_at={"$date": {"$numberLong": str(ms)}},
            utcOffset={"$numberInt": "0"},
        )
    elif form == 2:
        # Some uploaders store `date` as a BSON date; legacy mongoexport wrote "+0000" and plain ms.
        doc.update(date={"$date": iso.replace("Z", "+0000")}, created_at={"$date": ms})
    elif form == 3:
        doc.update(date={"$date": {"$numberLong": str(ms)}}, sysTime={"$date": iso})
    return doc


def test_import_reads_mongoexport_extended_json(home: Path, tmp_path: Path) -> None:
    # Found in review: mongoexport writes one entry a line and `{"_id": {"$oid": ...}}`,
    # `{"$numberLong": ...}`, `{"$date": ...}`; `phlo-tui import` refused the file ("not a JSON
    # file"), and as a JSON array every entry was quarantined (`_id` is not a string).
    entries = _entries(80)
    lines = tmp_path / "entries.json"
    lines.write_text("\n".join(json.dumps(_mongo_forms(e, i % 4)) for i, e in enumerate(entries[:60])) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", "import", str(lines), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["stored"] == 60
    array = tmp_path / "entries-array.json.gz"
    bad = {**_mongo_forms(entries[60], 1), "_id": {"$oid": 5}}
    canonical = [_mongo_forms(e, 1) for e in entries[61:]]
    array.write_bytes(gzip.compress(json.dumps([bad, *canonical]).encode()))
    with Engine(load_settings()) as engine:
        run = engine.import_file(array)
        assert (run.summary["stored"], run.summary["quarantined"]) == (19, 1), run.summary
        (reason,) = engine.lake.read_arrow("raw.glucose_quarantine", "dev")["reason"].to_pylist()
        stored = engine.query(
            "select _id, date, sgv, filtered, sys_time, epoch_ms(reading_ts) from raw.glucose_entries "
            "order by _id",
            "dev",
        ).rows
    assert reason.startswith('_id_is_string: _id={"$oid":5}')
    expected = [e for i, e in enumerate(entries) if i != 60]
    assert [(r[0], r[1], r[2], r[5]) for r in stored] == [
        (e["_id"], e["date"], e["sgv"], e["date"]) for e in expected
    ]
    assert {r[3] for i, r in enumerate(stored) if i < 60 and i % 4 == 1} == {123456.5}
    assert all(r[4] and r[4].endswith("Z") for i, r in enumerate(stored) if i < 60 and i % 4 == 3)


def test_extended_json_wrappers_holding_no_such_value_stay_as_sent() -> None:
    record = {
        "_id": {"$oid": 5},
        "sgv": {"$numberDouble": "NaN"},
        "mbg": {"$numberInt": "12", "extra": 1},
        "date": {"$date": "yesterday"},
        "sysTime": {"$date": {"$numberLong": "99999999999999999999"}},
        "noise": {"$numberLong": "7"},
        "filtered": {"$numberDecimal": "1.25"},
        "created_at": {"$date": {"$numberLong": "-1"}},
    }
    assert plain_record(record) == {
        **record,
        "noise": 7,
        "filtered": 1.25,
        "created_at": "1969-12-31T23:59:59.999Z",
    }
