"""The sql/ models on hand-built readings: bands, duplicates, error codes, local days, coverage, episodes, marts."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa_model
import pyarrow as pa
import pytest

from engine.ingest.tables import GLUCOSE_ENTRIES, PROFILES, TREATMENTS
from engine.sql_macros import define_macros
from engine.transform.models import Materialized, discover_models
from schemas.bronze import StgGlucoseEntries
from schemas.gold import FactDailyGlucoseMetrics, FactHourlyGlucoseProfile
from schemas.marts import MrtGlucoseHourlyPatterns, MrtGlucoseOverview
from schemas.silver import FactGlucoseReadings
from tests.sqlharness import (
    SQL_DIR,
    Entry,
    build,
    build_month,
    every_5_minutes,
    failed_checks,
    raw_entries,
    table,
)

BRONZE = "bronze.stg_glucose_entries"
SILVER = "silver.fct_glucose_readings"
DAILY = "gold.fct_daily_glucose_metrics"
AGP = "gold.fct_hourly_glucose_profile"
OVERVIEW = "marts.mrt_glucose_overview"
PATTERNS = "marts.mrt_glucose_hourly_patterns"


def daily_by_date(con: duckdb.DuckDBPyConnection) -> dict[object, dict[str, object]]:
    return {row["reading_date"]: row for row in table(con, DAILY, "reading_date")}


def test_models_follow_the_runner_contract() -> None:
    sources = [GLUCOSE_ENTRIES.name, TREATMENTS.name, PROFILES.name]
    models = {m.name: m for m in discover_models(SQL_DIR, sources=sources)}
    treatment_models = {
        "bronze.stg_treatments",
        "silver.fct_treatments",
        "gold.fct_daily_basal_insulin",
        "gold.fct_daily_treatment_totals",
        "marts.mrt_medication_effectiveness",
    }
    # The basal schedule is a whole table: the profile in force may be years older than a month.
    schedule = "bronze.stg_basal_schedule"
    assert set(models) == {BRONZE, SILVER, DAILY, AGP, OVERVIEW, PATTERNS, schedule} | treatment_models
    incremental = {name for name, m in models.items() if m.materialized is Materialized.INCREMENTAL}
    assert incremental == {BRONZE, SILVER, DAILY} | treatment_models
    assert models[schedule].depends_on == (PROFILES.name,)
    assert models[DAILY].depends_on == (BRONZE, SILVER)
    assert models[BRONZE].depends_on == (GLUCOSE_ENTRIES.name,)


def test_band_boundaries_follow_the_consensus() -> None:
    # Lows alternate with other values so no run below 70 lasts 15 minutes (no episode).
    values = [53, 70, 54, 180, 69, 181, 250, 251]
    con = build(raw_entries(every_5_minutes(datetime(2024, 5, 1, 8), values, "UTC"), "UTC"), "UTC")

    readings = {r["glucose_mg_dl"]: r for r in table(con, SILVER, "reading_ts")}
    assert {g: r["glucose_category"] for g, r in readings.items()} == {
        53: "very_low",
        54: "low",
        69: "low",
        70: "in_range",
        180: "in_range",
        181: "high",
        250: "high",
        251: "very_high",
    }
    assert {g for g, r in readings.items() if r["is_in_range"]} == {70, 180}

    (day,) = table(con, DAILY, "reading_date")
    assert day["reading_count"] == 8
    assert day["time_very_low_pct"] == 12.5  # 53
    assert day["time_low_pct"] == 25.0  # 54, 69
    assert day["time_in_range_pct"] == 25.0  # 70, 180
    assert day["time_high_pct"] == 25.0  # 181, 250
    assert day["time_very_high_pct"] == 12.5  # 251
    assert day["time_below_range_pct"] == 37.5
    assert day["time_above_range_pct"] == 37.5
    assert day["avg_glucose_mg_dl"] == 138.5  # 1108 / 8
    assert day["stddev_glucose_mg_dl"] == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert day["cv_pct"] == pytest.approx(100 * statistics.stdev(values) / 138.5, rel=1e-12)
    assert day["estimated_a1c_pct"] == pytest.approx(3.31 + 0.02392 * 138.5, abs=1e-12)
    assert (day["min_glucose_mg_dl"], day["max_glucose_mg_dl"]) == (53.0, 251.0)
    # 3.0*12.5 + 2.4*25 + 1.6*12.5 + 0.8*25 = 137.5, capped at 100.
    assert day["gri"] == 100.0
    assert (day["hypo_episodes_l1"], day["hypo_episodes_l2"]) == (0, 0)


def test_gri_weights_very_high_by_1_6_and_high_by_0_8() -> None:
    # 20 readings: 5 % very low, 10 % low, 15 % very high, 20 % high.
    values = [50, 100, 60, 100, 60, 100] + [300] * 3 + [200] * 4 + [100] * 7
    con = build(raw_entries(every_5_minutes(datetime(2024, 5, 1, 8), values, "UTC"), "UTC"), "UTC")
    (day,) = table(con, DAILY, "reading_date")
    assert (day["time_very_low_pct"], day["time_low_pct"]) == (5.0, 10.0)
    assert (day["time_very_high_pct"], day["time_high_pct"]) == (15.0, 20.0)
    # 3.0*5 + 2.4*10 + 1.6*15 + 0.8*20 = 79; swapped high weights would give 83.
    assert day["gri"] == pytest.approx(79.0, abs=1e-9)


def test_lbgi_and_hbgi_follow_kovatchev() -> None:
    con = build(
        raw_entries(every_5_minutes(datetime(2024, 5, 1, 8), [60, 112, 113, 250], "UTC"), "UTC"), "UTC"
    )
    (day,) = table(con, DAILY, "reading_date")
    risk = [1.509 * (math.log(g) ** 1.084 - 5.381) for g in (60, 112, 113, 250)]
    assert risk[1] < 0 < risk[2]  # the risk function crosses zero at 112.5 mg/dL
    assert day["lbgi"] == pytest.approx(sum(10 * min(f, 0) ** 2 for f in risk) / 4, rel=1e-12)
    assert day["hbgi"] == pytest.approx(sum(10 * max(f, 0) ** 2 for f in risk) / 4, rel=1e-12)


def test_duplicate_uploads_collapse_even_across_device_names() -> None:
    t0 = datetime(2024, 5, 1, 8, 0)
    entries = [
        Entry(t0, 120, "dexcom", entry_id="b" * 24),
        Entry(t0, 120, "xDrip-phone", entry_id="a" * 24, seconds_offset=0.4),
        Entry(t0, 120, "dexcom-receiver", entry_id="c" * 24, seconds_offset=30),
        # Different value within 60 s: another reading, not a copy.
        Entry(t0, 121, "xDrip-phone", entry_id="d" * 24, seconds_offset=10),
        # The next 5-minute reading with the same value is a new reading.
        Entry(t0 + timedelta(minutes=5), 120, "dexcom", entry_id="e" * 24),
        Entry(t0 + timedelta(minutes=5), 120, "xDrip-phone", entry_id="f" * 24, seconds_offset=-0.5),
        # Same value 50 s apart three times: the third is 100 s after the kept first, so it stays.
        Entry(t0 + timedelta(minutes=20), 140, "libre", entry_id="g" * 24),
        Entry(t0 + timedelta(minutes=20), 140, "libre", entry_id="h" * 24, seconds_offset=50),
        Entry(t0 + timedelta(minutes=20), 140, "libre", entry_id="i" * 24, seconds_offset=100),
        # Exactly 60 s later (a one-minute sensor): a reading of its own.
        Entry(t0 + timedelta(minutes=30), 150, "libre", entry_id="j" * 24),
        Entry(t0 + timedelta(minutes=31), 150, "libre", entry_id="k" * 24),
    ]
    con = build(raw_entries(entries, "UTC"), "UTC")
    kept = [r["entry_id"] for r in table(con, BRONZE, "reading_ts, entry_id")]
    # Earliest date wins; at 08:05 the phone's copy was half a second earlier.
    assert kept == ["b" * 24, "d" * 24, "f" * 24, "g" * 24, "i" * 24, "j" * 24, "k" * 24]
    (day,) = table(con, DAILY, "reading_date")
    assert day["reading_count"] == 7


def test_the_previous_reading_is_the_persons_whatever_device_sent_it() -> None:
    """A gap is a gap in the person's readings: a phone uploader that last sent 57 hours ago, between
    two readings of the sensor 10 minutes apart, is no 57-hour gap (issue 14, finding 16)."""
    t0 = datetime(2024, 5, 3, 7, 24)
    before = t0 - timedelta(hours=57)
    entries = [
        Entry(before, 140, "xDrip-phone"),
        Entry(before + timedelta(minutes=5), 141),
        *every_5_minutes(t0 - timedelta(minutes=60), list(range(142, 155)), "UTC"),  # ... 07:24
        Entry(t0 + timedelta(minutes=5), 128, "xDrip-phone"),
        Entry(t0 + timedelta(minutes=10), 126),
    ]
    con = build(raw_entries(entries, "UTC"), "UTC")
    rows = table(con, SILVER, "reading_ts")
    phone = next(r for r in rows if r["device"] == "xDrip-phone" and r["reading_date"].day == 3)
    assert phone["minutes_since_last_reading"] == 5.0
    assert phone["glucose_change_mg_dl"] == 128 - 154
    gaps = [r["minutes_since_last_reading"] for r in rows if (r["minutes_since_last_reading"] or 0) > 30]
    assert gaps == [57 * 60 - 60 - 5]  # the one real gap, between the two stretches


def test_error_codes_are_flagged_in_bronze_dropped_in_silver_counted_in_gold() -> None:
    t0 = datetime(2024, 5, 1, 8, 0)
    entries = [
        Entry(t0, 5, direction="NOT COMPUTABLE"),
        Entry(t0 + timedelta(minutes=5), 5, direction="NOT COMPUTABLE"),
        Entry(t0 + timedelta(minutes=10), 9, direction="NOT COMPUTABLE"),
        Entry(t0 + timedelta(minutes=15), 39),  # Dexcom's LOW: a reading of 39 mg/dL
        Entry(t0 + timedelta(minutes=20), 120),
        Entry(t0 + timedelta(minutes=25), 700),  # impossible: kept in bronze, not a reading
        Entry(t0 + timedelta(minutes=30), 95, type="mbg"),  # finger-stick, not sensor glucose
    ]
    con = build(raw_entries(entries, "UTC"), "UTC")
    bronze = table(con, BRONZE, "reading_ts")
    assert [(r["is_sensor_error"], r["sensor_error_code"], r["glucose_mg_dl"]) for r in bronze] == [
        (True, 5, None),
        (True, 5, None),
        (True, 9, None),
        (False, None, 39),
        (False, None, 120),
        (False, None, 700),
    ]
    assert [r["glucose_mg_dl"] for r in table(con, SILVER, "reading_ts")] == [39, 120]
    (day,) = table(con, DAILY, "reading_date")
    assert (day["reading_count"], day["sensor_error_count"]) == (2, 3)
    assert day["time_very_low_pct"] == 50.0


def test_evening_in_los_angeles_stays_on_its_local_day() -> None:
    zone = "America/Los_Angeles"
    entries = [
        (datetime(2024, 1, 31, 20, 0), 110),  # 2024-02-01 04:00 UTC
        (datetime(2024, 1, 31, 23, 55), 120),  # 2024-02-01 07:55 UTC
        (datetime(2024, 2, 4, 23, 30), 130),  # a Sunday evening
    ]
    raw = raw_entries(entries, zone)
    assert raw["reading_month"].to_pylist() == ["2024-02"] * 3  # raw partitions by UTC month
    # The session zone differs on purpose: models must read the zone from phlo_timezone.
    con = build(raw, zone, session_zone="Asia/Tokyo")

    assert [
        (r["reading_date"], r["reading_month"], r["hour_of_day"], r["day_of_week"], r["day_name"])
        for r in table(con, SILVER, "reading_ts")
    ] == [
        (date(2024, 1, 31), "2024-01", 20, 3, "Wednesday"),
        (date(2024, 1, 31), "2024-01", 23, 3, "Wednesday"),
        (date(2024, 2, 4), "2024-02", 23, 7, "Sunday"),
    ]
    days = daily_by_date(con)
    assert sorted(days) == [date(2024, 1, 31), date(2024, 2, 4)]
    assert days[date(2024, 1, 31)]["reading_count"] == 2
    assert days[date(2024, 1, 31)]["reading_month"] == "2024-01"
    assert days[date(2024, 1, 31)]["day_name"] == "Wednesday"


@pytest.mark.parametrize(
    ("zone", "day", "expected_readings", "hour", "readings_in_hour"),
    [
        ("America/New_York", date(2024, 3, 10), 276, 2, 0),  # 02:00-02:59 does not exist
        ("America/New_York", date(2024, 11, 3), 300, 1, 24),  # 01:00-01:59 happens twice
        ("Europe/Berlin", date(2024, 3, 31), 276, 2, 0),
        ("Europe/Berlin", date(2024, 10, 27), 300, 2, 24),
    ],
)
def test_daylight_saving_days_expect_their_real_length(
    zone: str, day: date, expected_readings: int, hour: int, readings_in_hour: int
) -> None:
    start = datetime(day.year, day.month, day.day)
    con = build(raw_entries(every_5_minutes(start, [120] * expected_readings, zone), zone), zone, "UTC")
    (row,) = table(con, DAILY, "reading_date")
    assert row["reading_date"] == day
    assert (row["reading_count"], row["expected_reading_count"]) == (expected_readings, expected_readings)
    assert row["coverage_pct"] == 100.0
    hours = con.execute(f"select count(*) from {SILVER} where hour_of_day = $1", [hour]).fetchone()
    assert hours == (readings_in_hour,)


def test_gaps_reduce_coverage() -> None:
    full_day = every_5_minutes(datetime(2024, 5, 1), [120] * 288, "UTC")
    two_hour_gap = [e for e in full_day if not 10 <= e.local_time.hour < 12]
    half_day = every_5_minutes(datetime(2024, 5, 2), [120] * 144, "UTC")
    con = build(raw_entries(two_hour_gap + half_day, "UTC"), "UTC")
    days = daily_by_date(con)
    assert days[date(2024, 5, 1)]["reading_count"] == 264
    assert days[date(2024, 5, 1)]["coverage_pct"] == pytest.approx(100 * 264 / 288, abs=1e-12)
    assert days[date(2024, 5, 2)]["coverage_pct"] == 50.0


def test_more_readings_than_slots_cap_coverage_at_100() -> None:
    # A one-minute sensor: 5 readings per 5-minute slot for two hours.
    entries = [Entry(datetime(2024, 5, 1, 8) + timedelta(minutes=i), 120 + i % 3) for i in range(120)]
    con = build(raw_entries(entries, "UTC"), "UTC")
    assert table(con, DAILY, "reading_date")[0]["coverage_pct"] == pytest.approx(100 * 120 / 288)
    entries = [Entry(datetime(2024, 5, 1) + timedelta(minutes=i), 120 + i % 3) for i in range(1440)]
    con = build(raw_entries(entries, "UTC"), "UTC")
    assert table(con, DAILY, "reading_date")[0]["coverage_pct"] == 100.0


HYPO_SCENARIOS: list[tuple[str, list[int], tuple[int, int]]] = [
    ("10 minutes below 70 is no episode", [100, 65, 65, 100, 100, 100], (0, 0)),
    ("15 minutes below 70 is one", [100, 65, 65, 65, 100, 100, 100], (1, 0)),
    ("5 minutes above does not end it", [100, 65, 65, 65, 100, 65, 65, 65, 100, 100, 100], (1, 0)),
    ("10 minutes above does not end it", [100, 65, 65, 65, 100, 100, 65, 65, 65, 100, 100, 100], (1, 0)),
    ("15 minutes above ends it", [100, 65, 65, 65, 100, 100, 100, 65, 65, 65, 100, 100, 100], (2, 0)),
    ("a short low before the episode joins it", [100, 65, 65, 100, 65, 65, 65, 100, 100, 100], (1, 0)),
    ("interrupted lows never 15 minutes in a row", [100, 65, 65, 100, 65, 65, 100, 100, 100], (0, 0)),
    ("below 54 is also below 70", [100, 60, 50, 50, 50, 60, 100, 100, 100], (1, 1)),
    ("level 2 needs its own 15 minutes", [100, 50, 60, 50, 100, 100, 100], (1, 0)),
    ("exactly 70 is not below", [100, 70, 70, 70, 100], (0, 0)),
    ("exactly 54 is not below 54", [100, 54, 54, 54, 100], (1, 0)),
]


def test_hypo_episodes() -> None:
    entries: list[Entry] = []
    for day, (_, values, _) in enumerate(HYPO_SCENARIOS, start=1):
        entries += every_5_minutes(datetime(2024, 5, day, 8), values, "UTC")
    con = build(raw_entries(entries, "UTC"), "UTC")
    days = daily_by_date(con)
    found = {
        name: (days[date(2024, 5, day)]["hypo_episodes_l1"], days[date(2024, 5, day)]["hypo_episodes_l2"])
        for day, (name, _, _) in enumerate(HYPO_SCENARIOS, start=1)
    }
    assert found == {name: expected for name, _, expected in HYPO_SCENARIOS}


def test_hypo_episode_gaps() -> None:
    t0 = datetime(2024, 5, 1, 8)
    entries = [
        # Two 10-minute lows 20 minutes apart with nothing between: unknown, not an episode.
        Entry(t0, 65),
        Entry(t0 + timedelta(minutes=5), 65),
        Entry(t0 + timedelta(minutes=25), 65),
        Entry(t0 + timedelta(minutes=30), 65),
        # One missed reading inside a low: still 15 minutes of readings below 70.
        Entry(t0 + timedelta(hours=3), 100),
        Entry(t0 + timedelta(hours=3, minutes=5), 65),
        Entry(t0 + timedelta(hours=3, minutes=10), 65),
        Entry(t0 + timedelta(hours=3, minutes=20), 65),
        Entry(t0 + timedelta(hours=3, minutes=25), 100),
        # Two 15-minute lows 20 minutes apart: the gap ends the first, so they count twice.
        *every_5_minutes(t0 + timedelta(hours=6), [65, 65, 65], "UTC"),
        *every_5_minutes(t0 + timedelta(hours=6, minutes=30), [65, 65, 65, 100, 100, 100], "UTC"),
    ]
    con = build(raw_entries(entries, "UTC"), "UTC")
    (day,) = table(con, DAILY, "reading_date")
    assert day["hypo_episodes_l1"] == 3


def test_hypo_episode_counts_on_the_local_day_it_starts() -> None:
    zone = "America/Los_Angeles"
    values = [100, 65, 65, 65, 65, 65, 100, 100, 100]  # the low starts 23:45 on 31 January
    con = build(raw_entries(every_5_minutes(datetime(2024, 1, 31, 23, 40), values, zone), zone), zone, "UTC")
    days = daily_by_date(con)
    assert days[date(2024, 1, 31)]["hypo_episodes_l1"] == 1
    assert days[date(2024, 2, 1)]["hypo_episodes_l1"] == 0


def day_of(day: date, in_range: int, high: int) -> list[Entry]:
    values = [100] * in_range + [200] * high
    return every_5_minutes(datetime(day.year, day.month, day.day, 6), values, "UTC")


def test_overview_rounds_for_display_and_rates_on_unrounded_time_in_range() -> None:
    entries = (
        day_of(date(2024, 5, 1), 14, 6)  # TIR 70 %
        + day_of(date(2024, 5, 2), 142, 61)  # TIR 69.95 %: shows 70.0, rates Good
        + day_of(date(2024, 5, 3), 10, 10)  # 50 %
        + day_of(date(2024, 5, 4), 9, 11)  # 45 %
        + day_of(date(2024, 5, 5), 6, 14)  # 30 %
        + day_of(date(2024, 5, 6), 5, 15)  # 25 %
        + day_of(date(2024, 5, 7), 12, 0)  # 12 readings: too few to show
        + every_5_minutes(datetime(2024, 5, 8, 6), [100] * 12 + [117], "UTC")  # 13 readings
    )
    con = build(raw_entries(entries, "UTC"), "UTC")
    rows = {r["reading_date"]: r for r in table(con, OVERVIEW, "reading_date")}
    assert date(2024, 5, 7) not in rows
    shown = {
        d.day: (
            r["avg_glucose_mg_dl"],
            r["time_in_range_pct"],
            r["estimated_a1c_pct"],
            r["diabetes_management_rating"],
        )
        for d, r in rows.items()
    }
    assert shown == {
        1: (130.0, 70.0, 6.42, "Excellent"),  # GMI 3.31 + 0.02392 * 130 = 6.4196
        2: (130.0, 70.0, 6.42, "Good"),  # mean 26400 / 203 = 130.049, TIR 142 / 203 = 69.951 %
        3: (150.0, 50.0, 6.90, "Good"),  # GMI 6.898
        4: (155.0, 45.0, 7.02, "Needs Improvement"),  # GMI 7.0176
        5: (170.0, 30.0, 7.38, "Needs Improvement"),  # GMI 7.3764
        6: (175.0, 25.0, 7.50, "Critical"),  # GMI 7.496
        8: (101.3, 100.0, 5.73, "Excellent"),  # mean 1317 / 13 = 101.3077, GMI 5.7333
    }
    assert rows[date(2024, 5, 8)]["reading_count"] == 13
    assert table(con, DAILY, "reading_date")[1]["time_in_range_pct"] == pytest.approx(100 * 142 / 203)


def test_agp_uses_the_last_14_days_and_patterns_the_last_90() -> None:
    # Days 1-6 of May at 300 mg/dL, days 7-20 at 100: only the 100s are in the 14-day AGP.
    entries = [
        e
        for day in range(1, 21)
        for e in every_5_minutes(datetime(2024, 5, day), [300 if day <= 6 else 100] * 288, "UTC")
    ]
    con = build(raw_entries(entries, "UTC"), "UTC")
    agp = table(con, AGP, "hour_of_day")
    assert [r["hour_of_day"] for r in agp] == list(range(24))
    assert {(r["window_start"], r["window_end"]) for r in agp} == {(date(2024, 5, 7), date(2024, 5, 20))}
    assert {r["reading_count"] for r in agp} == {14 * 12}
    assert {(r["p05_mg_dl"], r["p50_mg_dl"], r["p95_mg_dl"]) for r in agp} == {(100.0, 100.0, 100.0)}

    patterns = table(con, PATTERNS, "hour_of_day")
    assert len(patterns) == 24
    assert {(r["window_start"], r["window_end"]) for r in patterns} == {
        (date(2024, 2, 21), date(2024, 5, 20))
    }
    # Per hour 240 readings, 72 at 300: mean 160, positions 59.75 / 179.25 / 227.05 of 0..239.
    assert {
        (
            r["reading_count"],
            r["avg_glucose_mg_dl"],
            r["p25_mg_dl"],
            r["p50_mg_dl"],
            r["p75_mg_dl"],
            r["p95_mg_dl"],
        )
        for r in patterns
    } == {(240, 160.0, 100.0, 100.0, 300.0, 300.0)}
    assert {
        (r["time_in_range_pct"], r["time_above_range_pct"], r["time_below_range_pct"]) for r in patterns
    } == {(70.0, 30.0, 0.0)}


def test_agp_percentiles_interpolate_linearly() -> None:
    # Hour 8 holds 60, 70, ..., 170, one reading each; hour 9 none.
    values = [60 + 10 * i for i in range(12)]
    con = build(raw_entries(every_5_minutes(datetime(2024, 5, 1, 8), values, "UTC"), "UTC"), "UTC")
    hour = table(con, AGP, "hour_of_day")[8]
    # Sorted 60..170, n = 12: quantile q sits at position q * 11.
    assert hour["p05_mg_dl"] == pytest.approx(60 + 10 * 0.55)
    assert hour["p25_mg_dl"] == pytest.approx(60 + 10 * 2.75)
    assert hour["p50_mg_dl"] == pytest.approx(115.0)
    assert hour["p95_mg_dl"] == pytest.approx(60 + 10 * 10.45)
    assert table(con, AGP, "hour_of_day")[9]["reading_count"] == 0


def test_nightscout_fixture_entries() -> None:
    """cgm-remote-monitor tests/fixtures/example.json: 12 `?NC` codes, then 18 readings six hours earlier."""
    errors = [(1405792155000 - 300000 * i, "5", "NOT COMPUTABLE") for i in range(12)]
    readings = [
        (1405767555000, "178"), (1405767255000, "179"), (1405766955000, "178"), (1405766655000, "177"),
        (1405766355000, "176"), (1405766055000, "176"), (1405765756000, "175"), (1405765455000, "174"),
        (1405765155000, "174"), (1405764855000, "175"), (1405764555000, "176"), (1405764255000, "176"),
        (1405763955000, "173"), (1405763655000, "171"), (1405763355000, "170"), (1405763055000, "171"),
        (1405762755000, "169"), (1405762455000, "169"),
    ]  # fmt: skip
    zone = "America/Los_Angeles"  # the fixture's dateStrings are Pacific daylight time
    entries = [
        Entry(datetime.fromtimestamp(ms / 1000, UTC), int(sgv), direction=direction)
        for ms, sgv, direction in [*errors, *((ms, sgv, "Flat") for ms, sgv in readings)]
    ]
    con = build(raw_entries(entries, zone), zone)
    assert con.execute(f"select count(*), count_if(is_sensor_error) from {BRONZE}").fetchone() == (30, 12)
    silver = table(con, SILVER, "reading_ts")
    assert len(silver) == 18
    assert silver[0]["reading_local_ts"] == datetime(2014, 7, 19, 2, 34, 15)
    (day,) = table(con, DAILY, "reading_date")
    assert day["reading_date"] == date(2014, 7, 19)
    assert (day["reading_count"], day["sensor_error_count"]) == (18, 12)
    assert day["avg_glucose_mg_dl"] == pytest.approx(3137 / 18)
    assert day["time_in_range_pct"] == 100.0
    assert day["coverage_pct"] == pytest.approx(100 * 18 / 288)


def noisy_days(start: datetime, count: int, zone: str, seed: int) -> list[Entry]:
    """Smooth readings with some lows, some copies from a second uploader, and a few error codes."""
    rng = np.random.default_rng(seed)
    values = np.clip(150 + 120 * np.sin(np.arange(count) / 50) + rng.normal(0, 5, count), 40, 400).astype(int)
    entries = every_5_minutes(start, [int(v) for v in values], zone)
    copies = [Entry(e.local_time, e.sgv, "xDrip-phone", seconds_offset=0.7) for e in entries[::7]]
    errors = [Entry(e.local_time, 5, direction="NOT COMPUTABLE", seconds_offset=90) for e in entries[::50]]
    return entries + copies + errors


def test_a_month_from_its_slice_equals_the_month_from_full_history() -> None:
    zone = "America/Los_Angeles"
    entries = noisy_days(datetime(2024, 1, 20), 12 * 24 * 45, zone, seed=3)
    # A low across the January/February boundary and another device's series across it, two
    # minutes off the main sensor's grid so no value of theirs looks like a copy.
    entries += every_5_minutes(datetime(2024, 1, 31, 23, 47), [65, 62, 60, 58, 60, 66, 80], zone, "libre")
    entries += every_5_minutes(datetime(2024, 1, 31, 22, 2), [150] * 3, zone, "g7")
    entries += every_5_minutes(datetime(2024, 2, 1, 1, 2), [155] * 3, zone, "g7")
    # A device silent for six weeks, while the main sensor goes on: the person's readings have no gap.
    entries += [Entry(datetime(2024, 1, 21, 12, 1), 111, "g6"), Entry(datetime(2024, 3, 2, 12, 1), 112, "g6")]
    # Six weeks without any reading: the first after it has no previous one (28 days), sliced or not.
    entries += [Entry(datetime(2024, 4, 20, 12, 0), 130), Entry(datetime(2024, 4, 20, 12, 5), 135)]
    raw = raw_entries(entries, zone)
    full = build(raw, zone)
    tables = {name: full.sql(f"select * from {name}").to_arrow_table() for name in (BRONZE, SILVER)}
    tables[GLUCOSE_ENTRIES.name] = raw
    inputs = {BRONZE: [GLUCOSE_ENTRIES.name], SILVER: [BRONZE], DAILY: [BRONZE, SILVER]}
    keys = {BRONZE: "entry_id", SILVER: "entry_id", DAILY: "reading_date"}
    g7 = full.execute(
        f"select minutes_since_last_reading from {SILVER} where device = 'g7' order by reading_ts"
    ).fetchall()
    # 01:02 next day follows the main sensor's 01:00 reading, across the month boundary.
    assert g7[3] == (2.0,)
    april = full.execute(
        f"select glucose_change_mg_dl, minutes_since_last_reading from {SILVER} "
        "where reading_month = '2024-04' order by reading_ts"
    ).fetchall()
    assert april == [(None, None), (5, 5.0)]

    for model, upstream in inputs.items():
        path = SQL_DIR / model.split(".")[0] / f"{model.split('.')[1]}.sql"
        for month in ("2024-01", "2024-02", "2024-03", "2024-04"):
            sliced = build_month(path, month, {name: tables[name] for name in upstream}, zone)
            whole = full.sql(
                f"select * from {model} where reading_month = $m", params={"m": month}
            ).to_arrow_table()
            assert sliced.num_rows == whole.num_rows > 0, (model, month)
            assert_same_rows(sliced, whole, keys[model])


def assert_same_rows(left: pa.Table, right: pa.Table, key: str) -> None:
    assert left.schema == right.schema
    a = sorted(left.to_pylist(), key=lambda r: r[key])
    b = sorted(right.to_pylist(), key=lambda r: r[key])
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for column in x:
            if isinstance(x[column], float):
                assert x[column] == pytest.approx(y[column], rel=1e-12, abs=1e-12), (x[key], column)
            else:
                assert x[column] == y[column], (x[key], column)


@pytest.fixture(scope="module")
def realistic() -> duckdb.DuckDBPyConnection:
    """Sixteen full days in Berlin, smooth enough to pass every check."""
    zone = "Europe/Berlin"
    values = [int(140 + 70 * math.sin(i / 30)) for i in range(16 * 288)]
    return build(raw_entries(every_5_minutes(datetime(2024, 5, 1), values, zone), zone), zone)


SCHEMAS = [
    (BRONZE, StgGlucoseEntries),
    (SILVER, FactGlucoseReadings),
    (DAILY, FactDailyGlucoseMetrics),
    (AGP, FactHourlyGlucoseProfile),
    (OVERVIEW, MrtGlucoseOverview),
    (PATTERNS, MrtGlucoseHourlyPatterns),
]


@pytest.mark.parametrize(("name", "model"), SCHEMAS)
def test_schemas_accept_the_model_outputs(
    realistic: duckdb.DuckDBPyConnection, name: str, model: type[pa_model.DataFrameModel]
) -> None:
    # The runner hands Arrow; pandas frames from Arrow and from DuckDB differ in dtypes, both pass.
    from_arrow = realistic.sql(f"select * from {name}").to_arrow_table().to_pandas()
    assert len(from_arrow) > 0
    assert failed_checks(model, from_arrow) == set()
    assert failed_checks(model, frame_of(realistic, name)) == set()


def frame_of(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    return con.execute(f"select * from {name}").df()


def test_schemas_reject_doctored_rows_with_their_severity(realistic: duckdb.DuckDBPyConnection) -> None:
    bronze = frame_of(realistic, BRONZE)
    bronze.loc[0, "is_sensor_error"] = True
    bronze.loc[1, "glucose_mg_dl"] = 700
    assert failed_checks(StgGlucoseEntries, bronze) == {
        ("error_flag_matches_code", None, "error"),
        ("glucose_possible", None, "warning"),
    }

    silver = frame_of(realistic, SILVER)
    silver.loc[0, "glucose_mg_dl"] = 15
    silver.loc[0, "glucose_category"] = "very_low"
    silver.loc[0, "is_in_range"] = False
    silver.loc[1, "glucose_category"] = "low"
    silver.loc[2, "glucose_change_mg_dl"] = 200
    silver.loc[3, "entry_id"] = silver.loc[4, "entry_id"]
    assert failed_checks(FactGlucoseReadings, silver) == {
        ("greater_than_or_equal_to(20)", "glucose_mg_dl", "error"),
        ("field_uniqueness", "entry_id", "error"),
        ("category_matches_glucose", None, "error"),
        ("plausible_rate_of_change", None, "warning"),
    }

    daily = frame_of(realistic, DAILY)
    daily.loc[0, "time_in_range_pct"] -= 5
    daily.loc[1, "coverage_pct"] = 50.0
    daily.loc[2, "estimated_a1c_pct"] += 0.1
    daily.loc[3, "gri"] = 120.0
    assert failed_checks(FactDailyGlucoseMetrics, daily) == {
        ("bands_sum_to_100", None, "error"),
        ("coverage_representative", None, "warning"),
        ("gmi_matches_mean", None, "error"),
        ("less_than_or_equal_to(100)", "gri", "error"),
    }

    agp = frame_of(realistic, AGP)
    agp.loc[0, "p05_mg_dl"] = agp.loc[0, "p50_mg_dl"] + 1
    agp.loc[1, "reading_count"] = 100
    assert failed_checks(FactHourlyGlucoseProfile, agp) == {
        ("percentiles_ordered", None, "error"),
        ("hour_representative", None, "warning"),
    }

    overview = frame_of(realistic, OVERVIEW)
    overview.loc[0, "time_in_range_pct"] = 40.0
    overview.loc[1, "avg_glucose_mg_dl"] += 0.04
    assert failed_checks(MrtGlucoseOverview, overview) == {
        ("rating_matches_time_in_range", None, "error"),
        ("rounded_for_display", None, "error"),
    }

    patterns = frame_of(realistic, PATTERNS)
    patterns.loc[0, "reading_count"] = 0
    patterns.loc[1, "window_start"] = patterns.loc[1, "window_start"] - pd.Timedelta(days=1)
    assert failed_checks(MrtGlucoseHourlyPatterns, patterns) == {
        ("greater_than(0)", "reading_count", "error"),
        ("window_is_90_days", None, "error"),
    }


def test_models_refuse_to_guess_the_time_zone() -> None:
    con = duckdb.connect()
    define_macros(con)
    con.execute("create schema raw")
    con.register("arrow_raw", raw_entries([(datetime(2024, 5, 1, 8), 100)], "UTC"))
    con.execute("create view raw.glucose_entries as select * from arrow_raw")
    with pytest.raises(duckdb.InvalidInputException, match="phlo_timezone"):
        con.execute((SQL_DIR / "bronze" / "stg_glucose_entries.sql").read_text()).fetchall()
