"""The simulator's AndroidAPS and Loop modes speak their uploaders' conventions, and a run over HTTP
counts what they gave: each bolus once, no calculation as a dose, a deletion after ingest undone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.runs.records import RunRecord, RunStatus
from engine.sim.loop import DELETED_AFTER_S, REMOVED_AT, UPLOADERS
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import Clock

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
BOLUSES = ("Meal Bolus", "Correction Bolus")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def served(uploader: str, clock: Clock, days: int = 6) -> list[dict[str, Any]]:
    simulator = GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader=uploader)  # type: ignore[arg-type]
    return simulator.treatments(gte=int(clock.now * 1000) - days * DAY_MS, count=0)


def identity(doc: dict[str, Any]) -> tuple[object, ...]:
    kind = "bolus" if doc["eventType"] in BOLUSES else doc["eventType"]
    key = doc.get("syncIdentifier") or (doc.get("pumpId"), doc.get("pumpSerial"))
    return (kind, key) if key != (None, None) else ("document", doc["_id"])


def given(docs: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Insulin, carbs and automatic insulin as the person's loop gave them, counted from the
    documents by their uploader's own rules: valid, once per identity, bolus records only."""
    seen: set[tuple[object, ...]] = set()
    insulin = carbs = automatic = 0.0
    for doc in sorted(docs, key=lambda d: (d["created_at"], d["_id"])):
        if doc.get("isValid") is False or identity(doc) in seen:
            continue
        seen.add(identity(doc))
        if doc["eventType"] in BOLUSES:
            insulin += doc["insulin"]
            automatic += doc["insulin"] if doc.get("isSMB") or doc.get("automatic") else 0.0
        if doc["eventType"] == "Carb Correction":
            carbs += doc["carbs"]
    return round(insulin, 2), round(carbs, 2), round(automatic, 2)


def test_aaps_mode_uploads_calculations_pump_keys_smbs_and_deletions(clock: Clock) -> None:
    docs = served("aaps", clock)
    wizards = [d for d in docs if d["eventType"] == "Bolus Wizard"]
    boluses = {d["created_at"]: d for d in docs if d["eventType"] == "Meal Bolus"}
    assert wizards and all(w["app"] == "AAPS" and "bolusCalculatorResult" in w for w in wizards)
    for wizard in wizards:  # each calculation has its delivered bolus 12 s later, same insulin
        later = datetime.fromisoformat(wizard["created_at"]).timestamp() + 12
        match = [
            b
            for b in boluses.values()
            if abs(datetime.fromisoformat(b["created_at"]).timestamp() - later) < 1
        ]
        assert match and match[0]["insulin"] == wizard["insulin"]
    smbs = [d for d in docs if d.get("type") == "SMB"]
    assert smbs and all(d["isSMB"] and d["eventType"] == "Correction Bolus" for d in smbs)
    keyed = [d for d in docs if "pumpId" in d]
    assert all(d["pumpType"] and d["pumpSerial"] for d in keyed)
    keys = [(d["eventType"], d["pumpId"]) for d in keyed]
    assert len(set(keys)) < len(keys)  # some pump records were uploaded twice under new _ids
    assert len({d["_id"] for d in docs}) == len(docs)
    assert any(d.get("isValid") is False and d["srvModified"] > 0 for d in docs)
    simulator = GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader="aaps")
    entries = simulator.entries(gte=int(clock.now * 1000) - 6 * DAY_MS, count=0)
    assert any(e.get("isValid") is False for e in entries)


def test_loop_mode_uploads_sync_identifiers_automatic_boluses_and_no_calculations(clock: Clock) -> None:
    docs = served("loop", clock)
    assert docs and all(d["enteredBy"] == "loop://iPhone" and d["syncIdentifier"] for d in docs)
    assert not [d for d in docs if d["eventType"] == "Bolus Wizard"]
    boluses = [d for d in docs if d["eventType"] == "Correction Bolus"]
    assert {d["automatic"] for d in boluses} == {True, False}
    syncs = [d["syncIdentifier"] for d in docs]
    assert len(set(syncs)) < len(syncs)  # re-uploads keep their syncIdentifier
    # Deleted through API v1: the carbs entered by mistake are served until deleted, then not at all.
    simulator = GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader="loop")
    today = datetime.fromtimestamp(clock.now).toordinal()
    planned = [doc for ordinal in range(today - 6, today) for _, doc in simulator._treatments(ordinal)]
    removed = [doc for doc in planned if REMOVED_AT in doc]
    assert removed
    for doc in removed:
        for offset, present in ((-60_000, True), (60_000, False)):
            clock.now = (doc[REMOVED_AT] + offset) / 1000
            ids = {d["_id"] for d in simulator.treatments(gte=doc[REMOVED_AT] - DAY_MS, count=0)}
            assert (doc["_id"] in ids) is present
    assert not [d for d in docs if d.get("isValid") is False]


@pytest.fixture
def aaps_server(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader="aaps")) as srv:
        yield srv


def engine_for(home: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("NIGHTSCOUT_URL", url)
    monkeypatch.setenv("PHLO_TIMEZONE", "Europe/Paris")
    monkeypatch.setenv("PHLO_INITIAL_DAYS", "10")
    monkeypatch.setenv("PHLO_MAX_ATTEMPTS", "2")
    # No lookback: only the re-read window brings back a record older than the watermark.
    monkeypatch.setenv("PHLO_LOOKBACK_MINUTES", "0")
    monkeypatch.setenv("PHLO_REREAD_HOURS", "240")
    return Engine(load_settings())


def built(engine: Engine, run: RunRecord) -> None:
    """The run built dev; one whose simulated now lies days behind is held by freshness alone."""
    errors = {c.check for c in engine.quality(run.id) if c.severity == "error"}
    assert run.status in (RunStatus.SUCCEEDED, RunStatus.HELD) and errors <= {"freshness"}, (
        run.error,
        errors,
    )


def stored_docs(engine: Engine, simulator: GlucoseSimulator) -> list[dict[str, Any]]:
    """The documents the site serves now of those the lake received (a window's text bounds reach
    beyond its instants, so the lake holds some from before the run's since)."""
    ids = {row[0] for row in engine.query("select _id from raw.treatments", "dev").rows}
    docs = [
        d
        for d in simulator.treatments(gte=int(simulator.clock() * 1000) - 30 * DAY_MS, count=0)
        if d["_id"] in ids
    ]
    assert len(docs) == len(ids)
    return docs


def gold_totals(engine: Engine) -> tuple[float, float, float]:
    row = engine.query(
        "select round(sum(total_insulin_units), 2), round(sum(total_carbs_g), 2),"
        " round(sum(automatic_insulin_units), 2) from gold.fct_daily_treatment_totals",
        "dev",
    ).rows[0]
    return float(row[0]), float(row[1]), float(row[2])


def test_an_aaps_site_is_counted_as_given_and_a_later_deletion_leaves_the_layers(
    home: Path, aaps_server: SimulatorServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bolus logged by mistake and deleted three days later, when runs in between have moved the
    watermark on by more than the 2 days a created_at query reaches back: only the re-read window
    reads it again."""
    start_ms = int(clock.now * 1000)
    recent = served("aaps", clock, days=7)
    mistake = next(
        d for d in sorted(recent, key=lambda d: d["created_at"], reverse=True) if d.get("isValid") is False
    )
    deleted_ms = mistake["srvModified"]
    assert deleted_ms < start_ms - 3 * HOUR_MS

    with engine_for(home, aaps_server.url, monkeypatch) as engine:
        for moment_ms in (deleted_ms - DELETED_AFTER_S * 1000 + HOUR_MS, deleted_ms - 12 * HOUR_MS):
            clock.now = moment_ms / 1000  # logged, not deleted yet
            built(engine, engine.run_now())
            docs = stored_docs(engine, aaps_server.simulator)
            assert any(d["_id"] == mistake["_id"] and d.get("isValid") is True for d in docs)
            assert gold_totals(engine) == given(docs)

        clock.now = (deleted_ms + 60_000) / 1000  # deleted in AndroidAPS, synced to the site
        built(engine, engine.run_now())
        docs = stored_docs(engine, aaps_server.simulator)
        assert any(d["_id"] == mistake["_id"] and d.get("isValid") is False for d in docs)
        assert gold_totals(engine) == given(docs)
        gone = engine.query(
            "select count(*) from silver.fct_treatments where treatment_id = $id",
            "dev",
            {"id": mistake["_id"]},
        )
        assert gone.rows == [(0,)]


@pytest.mark.parametrize("uploader", UPLOADERS)
def test_a_closed_loop_week_counts_each_dose_once(
    home: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, uploader: str
) -> None:
    simulator = GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader=uploader)  # type: ignore[arg-type]
    with SimulatorServer(simulator) as server, engine_for(home, server.url, monkeypatch) as engine:
        run = engine.run_now()
        assert run.status is RunStatus.SUCCEEDED, run.error
        docs = stored_docs(engine, simulator)
        insulin, carbs, automatic = given(docs)
        assert 0 < automatic < insulin
        assert gold_totals(engine) == (insulin, carbs, automatic)
        # Basal: the site's two profile documents (engine/sim/profiles.py) are stored, the newer
        # one's six segments in force; the simulated temp basals cover every minute of a whole day,
        # so its basal is theirs, rate x duration, as the loop gave it.
        assert run.summary["profiles"] == {"fetched": 2, "stored": 2, "skipped": 0}
        assert engine.query("select count(*) from bronze.stg_basal_schedule", "dev").rows == [(7,)]
        given_basal: dict[str, float] = {}
        for doc in docs:
            if doc["eventType"] == "Temp Basal":
                day = datetime.fromisoformat(doc["created_at"]).astimezone(simulator.tz).date().isoformat()
                given_basal[day] = given_basal.get(day, 0.0) + doc["absolute"] * doc["duration"] / 60
        counted = dict(
            engine.query(
                "select cast(reading_date as varchar), basal_insulin_units from gold.fct_daily_basal_insulin"
                " where counted_minutes = 1440 and temp_basal_minutes = 1440",
                "dev",
            ).rows
        )
        assert len(counted) >= 5
        assert counted == pytest.approx({day: given_basal[day] for day in counted})
        deleted = engine.query("select count(*) from raw.glucose_entries where not is_valid", "dev").rows
        assert deleted[0][0] > 0
        kept = engine.query(
            "select count(*) from silver.fct_glucose_readings r join raw.glucose_entries e"
            " on r.entry_id = e._id where not e.is_valid",
            "dev",
        ).rows
        assert kept == [(0,)]


def test_a_loop_record_removed_from_the_site_leaves_the_layers(
    home: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loop deletes through API v1: the carbs entered by mistake are no longer served twenty
    minutes later. The next run's re-read window lists their range without them: they are stored
    as deleted and leave silver and gold."""
    simulator = GlucoseSimulator(seed=7, tz="Europe/Paris", clock=clock, uploader="loop")
    today = datetime.fromtimestamp(clock.now).toordinal()
    planned = [doc for ordinal in range(today - 3, today) for _, doc in simulator._treatments(ordinal)]
    mistake = max((d for d in planned if REMOVED_AT in d), key=lambda d: d[REMOVED_AT])
    assert mistake[REMOVED_AT] < clock.now * 1000
    with SimulatorServer(simulator) as server, engine_for(home, server.url, monkeypatch) as engine:
        clock.now = (mistake[REMOVED_AT] - 60_000) / 1000  # entered, not removed yet
        built(engine, engine.run_now())
        counted = "select count(*) from silver.fct_treatments where treatment_id = $id"
        assert engine.query(counted, "dev", {"id": mistake["_id"]}).rows == [(1,)]
        carbs_before = gold_totals(engine)[1]

        clock.now = (mistake[REMOVED_AT] + 60_000) / 1000  # removed in Loop, gone from the site
        run = engine.run_now()
        built(engine, run)
        assert run.summary["removed"] == 1
        assert engine.query(counted, "dev", {"id": mistake["_id"]}).rows == [(0,)]
        raw = engine.query(
            "select is_valid from raw.treatments where _id = $id", "dev", {"id": mistake["_id"]}
        )
        assert raw.rows == [(False,)]  # kept in raw, as deleted
        assert gold_totals(engine)[1] == pytest.approx(carbs_before - mistake["carbs"])
