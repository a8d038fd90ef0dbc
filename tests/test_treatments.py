"""Nightscout treatments end to end: the simulator over HTTP, ingest with quarantine, the layers, and
the medication-effectiveness mart checked by hand on a constructed day."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.ingest.nightscout import CREATED_AT, TREATMENTS_PATH, FetchWindow, NightscoutConfig, fetch_records
from engine.ingest.sources import TREATMENTS_SOURCE
from engine.ingest.tables import RAW_TABLES, TREATMENTS
from engine.runs.records import RunStatus, RunTrigger
from engine.sim.server import SimulatorServer
from engine.sim.simulator import COPY_UPLOADER, GlucoseSimulator
from engine.transform.layers import LayerBuilder
from tests.simclock import Clock, follow

HOUR = 3600.0
DAY_MS = 86_400_000
BOLUS_TYPES = {"Meal Bolus", "Bolus Wizard", "Snack Bolus"}
MART = "marts.mrt_medication_effectiveness"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=11, tz="Europe/Paris", clock=clock)) as srv:
        yield srv


def make_engine(home: Path, server: SimulatorServer, monkeypatch: pytest.MonkeyPatch, **env: str) -> Engine:
    """An engine on `server`, living at its simulator's 'now'."""
    monkeypatch.setenv("NIGHTSCOUT_URL", server.url)
    monkeypatch.setenv("PHLO_INITIAL_DAYS", "7")
    monkeypatch.setenv("PHLO_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PHLO_LOOKBACK_MINUTES", "0")
    monkeypatch.setenv("PHLO_REREAD_HOURS", "0")  # the windows these tests pin start at the watermark
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Engine(load_settings(), clock=follow(server.simulator))


def instant_ms(created_at: str) -> int:
    return int(datetime.fromisoformat(created_at).timestamp() * 1000)


# -- the simulator -------------------------------------------------------------------------------


def test_simulator_serves_messy_treatments_newest_first(server: SimulatorServer, clock: Clock) -> None:
    now_ms = int(clock.now * 1000)
    since = now_ms - 30 * DAY_MS
    every = server.simulator.treatments(gte=since, count=0)
    # Deterministic: a second simulator with the same seed serves the same documents.
    twin = GlucoseSimulator(seed=11, tz="Europe/Paris", clock=clock)
    assert twin.treatments(gte=since, count=0) == every
    assert 30 * 5 < len(every) < 30 * 9  # about 6.5 a day
    kinds = {t["eventType"] for t in every}
    assert {"Meal Bolus", "Correction Bolus", "Carb Correction", "Temp Basal", "Site Change"} <= kinds
    stamps = [t["created_at"] for t in every]
    assert stamps == sorted(stamps, reverse=True)  # newest first by the stored string
    assert any(s.endswith(".000Z") for s in stamps)
    assert any(s.endswith("Z") and "." not in s for s in stamps)
    assert any(s.endswith(("+01:00", "+02:00")) for s in stamps)
    assert any(" " in s for s in stamps)  # a late upload of an old uploader
    assert any(isinstance(t.get("insulin"), str) for t in every)
    assert any(isinstance(t.get("carbs"), str) for t in every)
    assert any("insulin" in t and t["insulin"] is None for t in every)
    # The deliberate bad records.
    assert any(isinstance(t.get("insulin"), float) and t["insulin"] < 0 for t in every)
    assert any(t.get("carbs") == 2500 for t in every)

    # A pump uploader sends some boluses and carbs again, seconds later under its own _id.
    def dose(t: dict[str, Any]) -> tuple[object, ...]:
        return t["eventType"], t.get("insulin"), t.get("carbs")

    copies = [t for t in every if t["enteredBy"] == COPY_UPLOADER]
    assert copies
    for copy in copies:
        at = instant_ms(copy["created_at"])
        assert any(
            0 < at - instant_ms(t["created_at"]) < 30_000
            and dose(t) == dose(copy)
            and t["_id"] != copy["_id"]
            for t in every
            if len(t["created_at"]) > 19
        )
    assert any(re.fullmatch(r"[\d-]{10}T[\d:]{8}", s) for s in stamps)  # no zone

    # The `$gt 2020` query makes the simulator generate every day since its history starts: seconds on
    # a busy machine, more than httpx's default 5 s.
    with httpx.Client(base_url=server.url, timeout=60) as http:
        default = http.get("/api/v1/treatments.json").json()
        assert len(default) == 10  # Nightscout's default count
        assert [t["created_at"] for t in default] == stamps[:10]
        # The site rewrites a bound into UTC ISO text with milliseconds, then compares strings.
        two_days_ago = datetime.fromtimestamp((now_ms - 2 * DAY_MS) / 1000, UTC)
        bounds = {
            "find[created_at][$gte]": datetime.fromtimestamp(since / 1000, UTC).isoformat(),
            "find[created_at][$lt]": two_days_ago.isoformat(),  # +00:00, read as ...000Z
            "count": "1000",
        }
        page = http.get("/api/v1/treatments.json", params=bounds).json()
        cut = two_days_ago.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert page and [t["_id"] for t in page] == [t["_id"] for t in every if t["created_at"] < cut]
        gt = http.get(
            "/api/v1/treatments.json",
            params={"find[created_at][$gt]": "2020-01-01T00:00:00Z", "find[created_at][$lte]": cut},
        ).json()
        assert [t["_id"] for t in gt] == [t["_id"] for t in page[:10]]
        assert http.get("/api/v1/treatments.json", params={"find[created_at][$gte]": "soon"}).json() == []


def test_created_at_bounds_compare_the_stored_strings(clock: Clock) -> None:
    """As in MongoDB: 20:00+01:00 (19:00Z) is not in [18:30Z, 19:30Z), it sorts after 19:30Z."""
    sim = GlucoseSimulator(seed=11, tz="Europe/Paris", clock=clock)
    every = sim.treatments(gte=int(clock.now * 1000) - 30 * DAY_MS, count=0)
    # +01:00 in winter, +02:00 in summer: whichever the last 30 days have.
    offset = next(
        t for t in every if t["created_at"].endswith(("+01:00", "+02:00")) and "T" in t["created_at"]
    )
    at = instant_ms(offset["created_at"])
    around = sim.treatments(gte=at - 1_800_000, lt=at + 1_800_000, count=0)
    assert offset["_id"] not in {t["_id"] for t in around}
    ahead_ms = int(offset["created_at"][-5:-3]) * 3_600_000
    local = sim.treatments(gte=at + ahead_ms - 1_800_000, lt=at + ahead_ms + 1_800_000, count=0)
    assert offset["_id"] in {t["_id"] for t in local}
    # A treatment exists once uploaded: the late ones appear only hours after their time.
    late = next(t for t in every if int(t["_id"][:8], 16) * 1000 > instant_ms(t["created_at"]) + HOUR * 1000)
    clock.now = instant_ms(late["created_at"]) / 1000 + 60
    assert late["_id"] not in {t["_id"] for t in sim.treatments(gte="2020-01-01", count=0)}
    clock.now = int(late["_id"][:8], 16)
    assert late["_id"] in {t["_id"] for t in sim.treatments(gte="2020-01-01", count=0)}


def test_meal_boluses_come_before_the_meal_rises(server: SimulatorServer, clock: Clock) -> None:
    now_ms = int(clock.now * 1000)
    since = now_ms - 20 * DAY_MS
    sim = server.simulator
    readings = sorted(
        (e["date"], int(e["sgv"]))
        for e in sim.entries(kind="sgv", gte=since - DAY_MS, count=0)
        if int(e["sgv"]) >= 39
    )
    boluses = [
        t
        for t in sim.treatments(gte=since, lt=now_ms - 3 * 3_600_000, count=0)
        if t["eventType"] in BOLUS_TYPES and "created_at" in t and t.get("carbs") != 2500
    ]
    assert len(boluses) > 40
    rising = 0
    for bolus in boluses:
        at = instant_ms(bolus["created_at"])
        before = [v for ms, v in readings if at - 10 * 60_000 <= ms <= at]
        after = [v for ms, v in readings if at < ms <= at + 150 * 60_000]
        if before and after and max(after) - before[-1] >= 15:
            rising += 1
    # Gaps in the trace and meals on a falling baseline hide a few rises, not most.
    assert rising >= 0.8 * len(boluses)


def test_fetch_pages_treatments_by_created_at(server: SimulatorServer, clock: Clock, tmp_path: Path) -> None:
    from engine.ingest.nightscout import configure_dlt

    configure_dlt(tmp_path)
    now_ms = int(clock.now * 1000)
    window = FetchWindow(now_ms - 6 * DAY_MS, now_ms + 1)
    fetched = fetch_records(
        NightscoutConfig(url=server.url, page_size=7), TREATMENTS_PATH, CREATED_AT, window
    )
    # The site compares text: the query reaches the margin beyond the window, and keeps all it gets.
    margin = CREATED_AT.margin_ms
    expected = server.simulator.treatments(gte=window.start_ms - margin, lt=window.end_ms + margin, count=0)
    assert sorted(t["_id"] for t in fetched) == sorted(t["_id"] for t in expected)
    dated = server.simulator.treatments(gte=window.start_ms - 3 * DAY_MS, count=0)
    inside = {t["_id"] for t in dated if window.start_ms <= instant_ms(t["created_at"]) < window.end_ms}
    assert inside <= {t["_id"] for t in fetched}
    asked = [r for r in server.requests if r.path == "/api/v1/treatments.json"]
    assert len(asked) > len(expected) // 7
    assert all(r.query["count"] == "7" for r in asked)
    assert all(r.query["find[created_at][$lt]"].endswith("Z") for r in asked)


# -- ingest ---------------------------------------------------------------------------------------


def test_treatments_ingest_with_quarantine_and_an_incremental_rerun_adds_nothing(
    home: Path, server: SimulatorServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A day of lookback: the rerun reads the last day again, and must add none of it twice.
    env = {"PHLO_TIMEZONE": "Europe/Paris", "PHLO_LOOKBACK_MINUTES": "1440"}
    with make_engine(home, server, monkeypatch, **env) as engine:
        first = engine.run_now()
        assert first.status is RunStatus.SUCCEEDED, first.error
        since = first.params["sources_since_ms"]["treatments"]
        # Everything whose text sorts after the margin before `since` (the query's end is past now).
        served = server.simulator.treatments(gte=since - CREATED_AT.margin_ms, count=0)
        stored = {r[0] for r in engine.query("select _id from raw.treatments", "dev").rows}
        quarantine = engine.query(
            'select entry_id, "check", reason from raw.treatments_quarantine', "dev"
        ).rows
        assert len(stored) + len(quarantine) == len(served)
        assert stored | {q[0] for q in quarantine} == {t["_id"] for t in served}
        bad = {
            t["_id"]: check
            for t in served
            for check in (
                "created_at_is_timestamp" if len(t["created_at"]) == 19 else None,  # no zone
                "insulin_in_range" if isinstance(t.get("insulin"), float) and t["insulin"] < 0 else None,
                "carbs_in_range" if t.get("carbs") == 2500 else None,
            )
            if check
        }
        assert bad, "any six whole days hold a bad record"
        assert {q[0]: q[1] for q in quarantine} == bad
        assert all(q[2].startswith(q[1] + ":") and "fails" in q[2] for q in quarantine)
        # Strings became numbers; every ISO form became the same instant.
        by_id = {t["_id"]: t for t in served}
        rows = engine.query("select _id, insulin, carbs, treatment_ts from raw.treatments", "dev").rows
        for _id, insulin, carbs, ts in rows:
            sent = by_id[_id]
            assert insulin == (float(sent["insulin"]) if sent.get("insulin") is not None else None)
            assert carbs == (float(sent["carbs"]) if sent.get("carbs") is not None else None)
            assert int(ts.timestamp() * 1000) == instant_ms(sent["created_at"])
        # A pump uploader's second copy of a bolus is stored, and collapses into the first.
        copies = {t["_id"] for t in served if t["enteredBy"] == COPY_UPLOADER}
        boluses = sum(
            1
            for t in served
            if t["_id"] in stored - copies
            and float(t.get("insulin") or 0) > 0
            and t["eventType"] != "Temp Basal"
        )
        assert engine.query(f"select count(*) from {MART}", "dev").rows[0][0] == boluses
        assert engine.query(f"select count(*) from {MART}", "main").rows[0][0] == boluses

        snapshots = {
            t: engine.lake.snapshot_id(t, "dev") for t in ("raw.treatments", "raw.treatments_quarantine")
        }
        rerun = engine.run_now()
        assert rerun.status is RunStatus.SUCCEEDED, rerun.error
        assert rerun.summary["stored"] == 0
        watermark = engine.store.watermark("nightscout:treatments")
        assert watermark == max(instant_ms(t["created_at"]) for t in served if t["_id"] in stored)
        again = server.simulator.treatments(gte=watermark + 1 - DAY_MS - CREATED_AT.margin_ms, count=0)
        assert rerun.summary["sources"]["treatments"]["fetched"] == len(again) > 0
        assert {t: engine.lake.snapshot_id(t, "dev") for t in snapshots} == snapshots

        clock.now += 6 * HOUR
        later = engine.run_now()
        assert later.status is RunStatus.SUCCEEDED, later.error
        assert engine.query("select count(*) - count(distinct _id) from raw.treatments", "dev").rows == [(0,)]
        assert engine.query(
            "select count(*) - count(distinct entry_id) from raw.treatments_quarantine", "dev"
        ).rows == [(0,)]
        newer = server.simulator.treatments(gte=since - CREATED_AT.margin_ms, count=0)
        total = engine.query(
            "select (select count(*) from raw.treatments) + (select count(*) from raw.treatments_quarantine)",
            "dev",
        ).rows[0][0]
        assert total == len(newer)


def test_a_site_without_treatments_warns_and_the_glucose_run_goes_on(
    home: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        SimulatorServer(GlucoseSimulator(seed=3, clock=clock), serve_treatments=False) as server,
        make_engine(home, server, monkeypatch, PHLO_INITIAL_DAYS="2") as engine,
    ):
        run = engine.run_now()
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.summary["not_served"] == ["treatments"]
        assert engine.query("select count(*) from raw.glucose_entries", "dev").rows[0][0] > 400
        assert engine.query("select count(*) from raw.treatments", "dev").rows[0][0] == 0
        warnings = [c for c in engine.quality(run.id) if c.check == "endpoint_served"]
        assert [(w.table, w.severity) for w in warnings] == [("raw.treatments", "warning")]
        fetches = [s for s in run.steps if s.name == "fetch" and s.detail.get("source") == "treatments"]
        assert len(fetches) == 1 and "HTTP 404" in fetches[0].detail["not_served"]


# -- the effectiveness mart on a constructed day --------------------------------------------------


def object_id(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:24]


def sgv(at: datetime, value: int) -> dict[str, Any]:
    ms = int(at.timestamp() * 1000)
    return {
        "_id": object_id(ms),
        "type": "sgv",
        "date": ms,
        "dateString": at.isoformat(),
        "sgv": value,
        "device": "dexcom",
        "direction": "Flat",
    }


def series(start: datetime, values: list[int]) -> list[dict[str, Any]]:
    return [sgv(start + timedelta(minutes=5 * i), v) for i, v in enumerate(values)]


def constructed_day() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Readings every 5 min on 2026-03-10 (UTC) from 06:00 to 16:00 and four treatments."""
    day = datetime(2026, 3, 10, tzinfo=UTC)
    at = lambda h, m=0: day + timedelta(hours=h, minutes=m)  # noqa: E731
    readings = (
        series(at(6), [130] * 12)  # 06:00-06:55
        + series(at(7), [140 + 2 * i for i in range(12)])  # 07:00-07:55: 140..162
        + [sgv(at(8), 165)]  # 08:00, the moment of bolus A: in neither window
        + series(at(8, 5), [170] * 23)  # 08:05-09:55
        + series(at(10), [100 - 2 * i for i in range(13)])  # 10:00-11:00: 100..76
        + series(at(11, 5), [72, 66, 66] + [80] * 9)  # 11:05-12:00
        + series(at(12, 5), [120] * 41)  # 12:05-15:25
        + series(at(15, 30), [100 + 2 * i for i in range(7)])  # 15:30-16:00: 100..112
    )
    treatments = [
        {
            "_id": "a" * 24,
            "eventType": "Meal Bolus",
            "created_at": "2026-03-10T08:00:00.000Z",
            "insulin": "5",
            "carbs": 50,
        },
        {
            "_id": "b" * 24,
            "eventType": "correction  bolus",
            "created_at": "2026-03-10T14:30:00+01:00",
            "insulin": 2.0,
            "carbs": None,
        },
        {
            "_id": "c" * 24,
            "eventType": "Carb Correction",
            "created_at": "2026-03-10T11:15:00Z",
            "carbs": "15",
        },
        {
            "_id": "d" * 24,
            "eventType": "Temp Basal",
            "created_at": "2026-03-10T09:00:00Z",
            "rate": 0.5,
            "duration": 30,
        },
        {
            "_id": "e" * 24,
            "eventType": "Snack Bolus",
            "created_at": "2026-03-10T22:00:00Z",
            "insulin": 1.0,
            "carbs": 10,
        },
    ]
    return readings, treatments


def load_raw(engine: Engine, readings: list[dict[str, Any]], treatments: list[dict[str, Any]]) -> None:
    from engine.ingest.tables import GLUCOSE_ENTRIES
    from engine.ingest.validation import validate_glucose_entries

    now = datetime(2026, 6, 1, tzinfo=UTC)
    for tdef in RAW_TABLES:
        engine.lake.ensure_table(tdef)
    if readings:
        glucose = validate_glucose_entries(readings, run_id="hand", source="test", now=now)
        assert glucose.quarantine.num_rows == 0
        engine.lake.merge(GLUCOSE_ENTRIES, glucose.valid)
    if treatments:
        batch = TREATMENTS_SOURCE.validate_batch(treatments, run_id="hand", source="test", now=now)
        assert batch.quarantine.num_rows == 0
        engine.lake.merge(TREATMENTS, batch.valid)


def build_layers(engine: Engine, months: set[str] | None) -> None:
    run = engine.store.create_run(RunTrigger.MANUAL, {})
    LayerBuilder(engine.lake, engine.store, engine.settings.timezone).build(run.id, months)


def mart_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    result = engine.query(f"select * from {MART} order by treatment_id", "dev")
    return {row[0]: dict(zip(result.columns, row, strict=True)) for row in result.rows}


def test_effectiveness_by_hand_on_a_constructed_day(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    with Engine(load_settings()) as engine:
        readings, treatments = constructed_day()
        load_raw(engine, readings, treatments)
        build_layers(engine, None)
        rows = mart_rows(engine)
        assert set(rows) == {"a" * 24, "b" * 24, "e" * 24}  # carbs only and basal are no bolus

        a = rows["a" * 24]
        # Hour before 08:00 = 07:00..07:55: 140, 142, ..., 162 -> (140 + 162) / 2 = 151.
        assert a["glucose_before"] == 151.0
        # 10:00..11:00 inclusive: 100, 98, ..., 76 -> (100 + 76) / 2 = 88.
        assert a["glucose_after"] == 88.0
        assert a["glucose_reduction"] == 63.0  # 151 - 88
        # (08:00, 12:00]: lowest is 66, first at 11:10 -> 190 minutes; 66 < 70 is a hypo.
        assert a["min_glucose_after"] == 66
        assert a["minutes_to_min_after"] == 190.0
        assert a["hypo_within_4h"] is True
        assert (a["insulin_units"], a["carbs_g"], a["event_type"]) == (5.0, 50.0, "Meal Bolus")
        assert a["bolus_local_ts"] == datetime(2026, 3, 10, 8, 0)

        b = rows["b" * 24]  # 14:30+01:00 = 13:30 UTC
        assert b["event_type"] == "Correction Bolus"
        # 12:30..13:25: twelve readings of 120.
        assert b["glucose_before"] == 120.0
        # [15:30, 16:30] holds 15:30..16:00 only: 100, 102, ..., 112 -> 106.
        assert b["glucose_after"] == 106.0
        assert b["glucose_reduction"] == 14.0
        # (13:30, 17:30]: 120 until 15:25, then 100 at 15:30 -> 120 minutes, no hypo.
        assert (b["min_glucose_after"], b["minutes_to_min_after"], b["hypo_within_4h"]) == (100, 120.0, False)
        assert b["carbs_g"] is None

        e = rows["e" * 24]  # 22:00: no reading around it
        for column in (
            "glucose_before",
            "glucose_after",
            "glucose_reduction",
            "min_glucose_after",
            "minutes_to_min_after",
            "hypo_within_4h",
        ):
            assert e[column] is None, column

        totals = engine.query("select * from gold.fct_daily_treatment_totals", "dev")
        assert [dict(zip(totals.columns, r, strict=True)) for r in totals.rows] == [
            {
                "reading_date": datetime(2026, 3, 10).date(),
                "total_insulin_units": 8.0,  # 5 + 2 + 1
                "total_carbs_g": 75.0,  # 50 + 15 + 10
                "automatic_insulin_units": 0.0,
                "bolus_count": 3,
                "carb_entry_count": 3,
                # No profile: the 30 minutes of temp basal are not the day's basal, which stays unknown.
                "basal_insulin_units": None,
                "total_daily_dose_units": None,
                "basal_share": None,
                "reading_month": "2026-03",
            }
        ]
        basal = engine.query(
            "select basal_insulin_units, counted_minutes, is_complete from gold.fct_daily_basal_insulin",
            "dev",
        )
        assert basal.rows == [(pytest.approx(0.25), 30, False)]  # 0.5 U/h for 30 min, by hand


def test_a_bolus_before_midnight_at_a_month_end_reads_the_next_month(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Glucose of February arriving after January was built still completes January's last bolus."""
    zone = ZoneInfo("America/New_York")
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PHLO_TIMEZONE", "America/New_York")
    bolus_at = datetime(2026, 1, 31, 23, 0, tzinfo=zone)
    january = series(datetime(2026, 1, 31, 21, 0, tzinfo=zone), [200] * 36)  # 21:00-23:55 local
    february = series(
        datetime(2026, 2, 1, 0, 0, tzinfo=zone), [180] * 12 + [140 - 2 * i for i in range(13)] + [120] * 24
    )  # 00:00-04:55 local
    bolus = {"_id": "f" * 24, "eventType": "Meal Bolus", "created_at": bolus_at.isoformat(), "insulin": 4}
    with Engine(load_settings()) as engine:
        load_raw(engine, [], [bolus])
        engine.store.add_pending_months({"2026-01"}, "hand")
        first = import_entries(engine, tmp_path / "jan.json", january)
        assert first.status is RunStatus.SUCCEEDED, first.error
        assert engine.store.pending_months() == set()
        assert mart_rows(engine)["f" * 24]["glucose_after"] is None  # February not there yet

        # Only February readings arrive; those within 4 h of its start mark January pending too.
        second = import_entries(engine, tmp_path / "feb.json", february)
        assert second.status is RunStatus.SUCCEEDED, second.error
        assert "2026-01" in second.summary["months"]
        row = mart_rows(engine)["f" * 24]
        assert row["reading_month"] == "2026-01"
        assert row["glucose_before"] == 200.0  # 22:00..22:55 local, all 200
        # 01:00..02:00 local: 140, 138, ..., 116 -> (140 + 116) / 2 = 128.
        assert row["glucose_after"] == 128.0
        assert row["glucose_reduction"] == 72.0
        # (23:00, 03:00]: lowest 116 at 02:00, 180 minutes after; first 120 comes later.
        assert (row["min_glucose_after"], row["minutes_to_min_after"]) == (116, 180.0)

        # A month built on its own, with its neighbours as context, equals the full build.
        build_layers(engine, {"2026-01"})
        assert mart_rows(engine)["f" * 24] == row
        build_layers(engine, None)
        assert mart_rows(engine)["f" * 24] == row


def import_entries(engine: Engine, path: Path, entries: list[dict[str, Any]]) -> Any:
    path.write_text(json.dumps(entries))
    return engine.import_file(path)
