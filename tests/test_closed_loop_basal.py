"""Total daily insulin from basal (issue 18, deliverable 5): the profile's scheduled basal, replaced
where temp basals ran, counted minute by minute (sql/bronze/stg_basal_schedule.sql,
sql/gold/fct_daily_basal_insulin.sql), on days whose totals can be worked out by hand. Profile
documents are shaped as `/api/v1/profile.json` serves them (cgm-remote-monitor lib/api/profile,
tests/fixtures of AndroidAPS and Loop uploads); temp basals as AndroidAPS and Loop upload them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.ingest.profiles import profile_rows
from engine.ingest.tables import PROFILES
from tests.test_treatments import build_layers, load_raw, sgv

DAY = datetime(2024, 1, 18, tzinfo=UTC)
PROFILE_START = "2023-06-01T00:00:00.000Z"


def schedule(*segments: tuple[str, float], seconds: bool = True) -> list[dict[str, Any]]:
    entries = []
    for time, value in segments:
        hours, minutes = (int(p) for p in time.split(":"))
        entry: dict[str, Any] = {"time": time, "value": value}
        if seconds:
            entry["timeAsSeconds"] = hours * 3600 + minutes * 60
        entries.append(entry)
    return entries


def profile(
    basal: list[dict[str, Any]], *, start: str = PROFILE_START, timezone: str = "UTC", key: str = "a"
) -> dict[str, Any]:
    """A profile document as AndroidAPS uploads it: the store entry in use, and another one."""
    return {
        "_id": f"65{key * 22}"[:24],
        "defaultProfile": "Active",
        "startDate": start,
        "units": "mg/dl",
        "store": {
            "Active": {"dia": 5, "basal": basal, "timezone": timezone, "units": "mg/dl"},
            "Sick day": {"dia": 5, "basal": schedule(("00:00", 9.0)), "timezone": timezone},
        },
    }


def temp_basal(key: str, at: datetime, minutes: float, **fields: Any) -> dict[str, Any]:
    return {
        "_id": f"77{key * 22}"[:24],
        "eventType": "Temp Basal",
        "created_at": at.isoformat().replace("+00:00", ".000Z"),
        "duration": minutes,
        "enteredBy": "openaps://AndroidAPS",
        **fields,
    }


def bolus(key: str, at: datetime, units: float) -> dict[str, Any]:
    return {
        "_id": f"88{key * 22}"[:24],
        "eventType": "Correction Bolus",
        "created_at": at.isoformat().replace("+00:00", ".000Z"),
        "insulin": units,
    }


@pytest.fixture
def engine(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    with Engine(load_settings()) as engine:
        yield engine


def day_totals(
    engine: Engine,
    profiles: list[dict[str, Any]],
    treatments: list[dict[str, Any]],
    day: datetime = DAY,
) -> dict[str, Any]:
    """Build every layer over the profiles, the treatments, a reading at noon (basal is counted on
    days with data) and one just after the day (and up to the newest record), and return the
    day's row of the totals."""
    readings = [sgv(day + timedelta(hours=12), 120), sgv(day + timedelta(days=1, minutes=30), 120)]
    load_raw(engine, readings, treatments)
    engine.lake.merge(PROFILES, profile_rows(profiles, run_id="hand", now=DAY).rows)
    build_layers(engine, None)
    result = engine.query(
        "select t.*, b.counted_minutes, b.temp_basal_minutes from gold.fct_daily_treatment_totals t "
        "left join gold.fct_daily_basal_insulin b using (reading_date) where t.reading_date = $day",
        "dev",
        params={"day": day.astimezone(engine.settings.zone).date()},
    )
    assert len(result.rows) == 1, result.rows
    return dict(zip(result.columns, result.rows[0], strict=True))


def test_flat_schedule_with_one_temp_basal_is_25_units(engine: Engine) -> None:
    # 23 h at 1 U/h + 1 h at 2 U/h = 25 U; with a 3 U bolus the day's dose is 28 U.
    row = day_totals(
        engine,
        [profile(schedule(("00:00", 1.0)))],
        [
            temp_basal("1", DAY + timedelta(hours=8), 60, rate=2.0, absolute=2.0),
            bolus("1", DAY + timedelta(hours=9), 3),
        ],
    )
    assert row["basal_insulin_units"] == pytest.approx(25.0)
    assert row["total_insulin_units"] == pytest.approx(3.0)
    assert row["total_daily_dose_units"] == pytest.approx(28.0)
    assert row["basal_share"] == pytest.approx(25 / 28)
    assert (row["counted_minutes"], row["temp_basal_minutes"]) == (1440, 60)


def test_three_segments_read_by_time_of_day(engine: Engine) -> None:
    # 00-06 at 0.5, 06-18 at 1.0, 18-24 at 0.8: 3 + 12 + 4.8 = 19.8 U. The entries give "HH:MM"
    # only (no timeAsSeconds), as older uploads do; the first entry starts the day whatever it says.
    row = day_totals(
        engine, [profile(schedule(("00:30", 0.5), ("06:00", 1.0), ("18:00", 0.8), seconds=False))], []
    )
    assert row["basal_insulin_units"] == pytest.approx(19.8)
    assert row["total_daily_dose_units"] == pytest.approx(19.8)
    assert row["bolus_count"] == 0


def test_a_newer_temp_basal_ends_the_one_before(engine: Engine) -> None:
    # On 1 U/h: A (3 U/h, 120 min) from 10:00 is cut at 10:30 by B (0.5 U/h, 30 min); C (2 U/h,
    # 60 min) from 15:00 is cancelled at 15:15 by a zero-duration temp basal.
    # A 0.5 h x 3 = 1.5, B 0.5 h x 0.5 = 0.25, C 0.25 h x 2 = 0.5, the other 1365 min at 1 U/h = 22.75.
    at = lambda h, m=0: DAY + timedelta(hours=h, minutes=m)  # noqa: E731
    row = day_totals(
        engine,
        [profile(schedule(("00:00", 1.0)))],
        [
            temp_basal("a", at(10), 120, absolute=3.0),
            temp_basal("b", at(10, 30), 30, absolute=0.5),
            temp_basal("c", at(15), 60, absolute=2.0),
            temp_basal("d", at(15, 15), 0, absolute=0.0),
        ],
    )
    assert row["basal_insulin_units"] == pytest.approx(1.5 + 0.25 + 0.5 + 22.75)
    assert row["temp_basal_minutes"] == 75


def test_percent_and_delivered_amount(engine: Engine) -> None:
    # On 1 U/h: a -50 % temp basal for 60 min gives 0.5 U; Loop's temp basal of 2 U/h for 30 min
    # says it delivered 0.9 U (amount), which counts instead of the 1.0 U its rate would give.
    # 0.5 + 0.9 + 22.5 h x 1 = 23.9 U.
    row = day_totals(
        engine,
        [profile(schedule(("00:00", 1.0)))],
        [
            temp_basal("p", DAY + timedelta(hours=2), 60, percent=-50),
            temp_basal(
                "l", DAY + timedelta(hours=20), 30, rate=2.0, absolute=2.0, amount=0.9, temp="absolute"
            ),
        ],
    )
    assert row["basal_insulin_units"] == pytest.approx(23.9)


def test_the_profile_in_force_changes_mid_day(engine: Engine) -> None:
    # The first profile's 1 U/h until 12:00, then a newer document's 2 U/h: 12 + 24 = 36 U.
    newer = profile(schedule(("00:00", 2.0)), start="2024-01-18T12:00:00.000Z", key="b")
    row = day_totals(engine, [profile(schedule(("00:00", 1.0))), newer], [])
    assert row["basal_insulin_units"] == pytest.approx(36.0)


def test_a_dst_day_in_the_profiles_zone(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Europe/Berlin skips 02:00-03:00 on 2024-03-31: a 23-hour day. 1 U/h until 06:00 local
    # (5 real hours), 2 U/h after (18 hours): 5 + 36 = 41 U over 1380 minutes.
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PHLO_TIMEZONE", "Europe/Berlin")
    day = datetime(2024, 3, 31, tzinfo=ZoneInfo("Europe/Berlin"))
    with Engine(load_settings()) as engine:
        row = day_totals(
            engine,
            [profile(schedule(("00:00", 1.0), ("06:00", 2.0)), timezone="Europe/Berlin")],
            [],
            day=day,
        )
    assert row["basal_insulin_units"] == pytest.approx(41.0)
    assert row["counted_minutes"] == 1380


def test_no_basal_without_a_profile_or_temp_basal(engine: Engine) -> None:
    # A site without profiles (injections): the dose is the boluses, basal unknown, not zero.
    row = day_totals(engine, [], [bolus("1", DAY + timedelta(hours=9), 4)])
    assert row["total_insulin_units"] == pytest.approx(4.0)
    assert row["basal_insulin_units"] is None and row["total_daily_dose_units"] is None
