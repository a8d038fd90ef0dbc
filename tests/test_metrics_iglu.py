"""Gold metrics against iglu-python, an independent implementation, on the same readings per local day.

iglu's conventions match docs/metrics.md, checked in its source: below_percent counts gl < target,
above_percent gl > target, in_range_percent lo <= gl <= hi, GRI uses below_54, below_70 - below_54,
above_250 and above_180 - above_250 with weights 3.0, 2.4, 1.6, 0.8 capped at 100, and SD is n-1.
Its LBGI/HBGI keep only readings below / at or above 112.5 mg/dL, where the Kovatchev risk
function changes sign, so on whole mg/dL readings they equal docs/metrics.md's min(f, 0) / max(f, 0).
Both sides compute in double precision over the same values; only summation order differs, so the
tolerance is 1e-9 relative.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import iglu_python as iglu
import numpy as np
import pandas as pd
import pytest

from tests.sqlharness import Entry, build, raw_entries, table

TOLERANCE = {"rel": 1e-9, "abs": 1e-9}
BOUNDARIES = (53, 54, 69, 70, 180, 181, 250, 251)


def local_days(zone: str, first: date, days: int, seed: int) -> tuple[pd.DataFrame, set[date]]:
    """5-minute readings over whole local days, with boundary values, a long gap and scattered misses.

    Returns the readings (time in UTC, gl) and the days that run from 00:00 to 23:55 unbroken at
    both ends, where CGM-active percentages are comparable.
    """
    tz = ZoneInfo(zone)
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end = start.replace(tzinfo=None) + timedelta(days=days)
    # Aware datetimes sharing a tzinfo subtract as wall-clock times; UTC gives the real length.
    count = int((end.replace(tzinfo=tz).astimezone(UTC) - start.astimezone(UTC)).total_seconds() // 300)
    rng = np.random.default_rng(seed)
    steps = np.arange(count)
    values = np.clip(140 + 95 * np.sin(steps / 40) + rng.normal(0, 8, count), 40, 400).astype(int)
    values[rng.choice(count, 200, replace=False)] = rng.choice(BOUNDARIES, 200)
    keep = np.ones(count, dtype=bool)
    keep[count // 2 : count // 2 + 40] = False  # a 3 h 20 min gap mid-way
    keep[rng.choice(count, 30, replace=False)] = False  # single missed readings
    times = pd.date_range(start, periods=count, freq="5min").tz_convert("UTC")
    readings = pd.DataFrame({"time": times[keep], "gl": values[keep]})
    local = readings["time"].dt.tz_convert(zone)
    whole = {
        day
        for day, group in readings.groupby(local.dt.date)
        if local[group.index].dt.strftime("%H:%M").iloc[[0, -1]].tolist() == ["00:00", "23:55"]
    }
    return readings, whole


def build_gold(readings: pd.DataFrame, zone: str) -> duckdb.DuckDBPyConnection:
    entries = [
        Entry(t.to_pydatetime(), int(g)) for t, g in zip(readings["time"], readings["gl"], strict=True)
    ]
    return build(raw_entries(entries, zone), zone, session_zone="UTC")


def iglu_by_day(readings: pd.DataFrame, zone: str) -> pd.DataFrame:
    """iglu's metrics with each local calendar day as a subject."""
    data = pd.DataFrame(
        {
            "id": readings["time"].dt.tz_convert(zone).dt.date.astype(str),
            "time": readings["time"].dt.tz_convert(zone),
            "gl": readings["gl"].astype(float),
        }
    )
    frames = [
        iglu.mean_glu(data),
        iglu.sd_glu(data),
        iglu.cv_glu(data),
        iglu.gmi(data),
        iglu.in_range_percent(data, target_ranges=[[70, 180]]),
        iglu.below_percent(data, targets_below=[54, 70]),
        iglu.above_percent(data, targets_above=[180, 250]),
        iglu.gri(data),
        iglu.lbgi(data),
        iglu.hbgi(data),
        iglu.active_percent(data)[["id", "active_percent"]],
    ]
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on="id")
    merged["reading_date"] = [date.fromisoformat(d) for d in merged["id"]]
    return merged.set_index("reading_date")


CASES = [
    # A spring-forward day (23 h) and an autumn one (25 h).
    ("America/New_York", date(2024, 3, 8), 5, 1),
    ("Europe/Berlin", date(2024, 10, 25), 4, 2),
    # Evenings in Los Angeles are the next morning in UTC.
    ("America/Los_Angeles", date(2024, 6, 1), 6, 3),
]


@pytest.mark.parametrize(("zone", "first", "days", "seed"), CASES)
def test_daily_metrics_agree_with_iglu(zone: str, first: date, days: int, seed: int) -> None:
    readings, whole_days = local_days(zone, first, days, seed)
    con = build_gold(readings, zone)
    gold = {row["reading_date"]: row for row in table(con, "gold.fct_daily_glucose_metrics", "reading_date")}
    expected = iglu_by_day(readings, zone)
    assert sorted(gold) == sorted(expected.index) == [first + timedelta(days=i) for i in range(days)]

    for day, row in gold.items():
        ref = expected.loc[day]
        observed = {
            "mean": row["avg_glucose_mg_dl"],
            "sd": row["stddev_glucose_mg_dl"],
            "cv": row["cv_pct"],
            "gmi": row["estimated_a1c_pct"],
            "tir": row["time_in_range_pct"],
            "very_low": row["time_very_low_pct"],
            "below": row["time_below_range_pct"],
            "low": row["time_low_pct"],
            "above": row["time_above_range_pct"],
            "high": row["time_high_pct"],
            "very_high": row["time_very_high_pct"],
            "gri": row["gri"],
            "lbgi": row["lbgi"],
            "hbgi": row["hbgi"],
        }
        reference = {
            "mean": ref["mean"],
            "sd": ref["SD"],
            "cv": ref["CV"],
            "gmi": ref["GMI"],
            "tir": ref["in_range_70_180"],
            "very_low": ref["below_54"],
            "below": ref["below_70"],
            "low": ref["below_70"] - ref["below_54"],
            "above": ref["above_180"],
            "high": ref["above_180"] - ref["above_250"],
            "very_high": ref["above_250"],
            "gri": ref["GRI"],
            "lbgi": ref["LBGI"],
            "hbgi": ref["HBGI"],
        }
        assert observed == pytest.approx(reference, **TOLERANCE), day
        if day in whole_days:
            assert row["coverage_pct"] == pytest.approx(ref["active_percent"], **TOLERANCE), day


def test_days_hold_boundary_values_gaps_and_daylight_saving() -> None:
    """The fixture really contains what the comparison above claims to cover."""
    readings, whole_days = local_days("America/New_York", date(2024, 3, 8), 5, 1)
    local = readings["time"].dt.tz_convert("America/New_York")
    per_day = readings.groupby(local.dt.date)["gl"]
    assert set(BOUNDARIES) <= set(readings["gl"])
    assert per_day.size()[date(2024, 3, 10)] <= 276 < per_day.size()[date(2024, 3, 9)]
    assert (readings["time"].diff() > pd.Timedelta(hours=3)).any()
    assert date(2024, 3, 10) in whole_days


def test_agp_percentiles_agree_with_iglu() -> None:
    zone = "America/Los_Angeles"
    readings, _ = local_days(zone, date(2024, 6, 1), 18, 4)
    con = build_gold(readings, zone)
    agp = table(con, "gold.fct_hourly_glucose_profile", "hour_of_day")
    local = readings["time"].dt.tz_convert(zone)
    window = (local.dt.date >= date(2024, 6, 5)) & (local.dt.date <= date(2024, 6, 18))
    assert {(r["window_start"], r["window_end"]) for r in agp} == {(date(2024, 6, 5), date(2024, 6, 18))}
    data = pd.DataFrame(
        {
            "id": local[window].dt.hour.astype(str),
            "time": local[window],
            "gl": readings["gl"][window].astype(float),
        }
    )
    expected = iglu.quantile_glu(data, quantiles=[5, 25, 50, 75, 95]).set_index("id")
    for row in agp:
        ref = expected.loc[str(row["hour_of_day"])]
        observed = [row[f"p{q:02d}_mg_dl"] for q in (5, 25, 50, 75, 95)]
        assert observed == pytest.approx([ref[str(q)] for q in (5, 25, 50, 75, 95)], **TOLERANCE)
        assert row["reading_count"] == int((data["id"] == str(row["hour_of_day"])).sum())
