"""Treatments are filtered on `created_at` as text, as a real site does: the simulator over HTTP
compares stored strings, and the ingest must still store every treatment exactly once."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.ingest.nightscout import (
    CREATED_AT,
    TREATMENTS_PATH,
    FetchWindow,
    NightscoutConfig,
    configure_dlt,
    fetch_records,
    plan_windows,
)
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import Clock
from tests.test_treatments import DAY_MS, instant_ms, make_engine

HOUR_MS = 3_600_000


def uploaded_ms(treatment: dict[str, Any]) -> int:
    """When the site received it: the second its ObjectId starts with."""
    return int(treatment["_id"][:8], 16) * 1000


def is_valid(treatment: dict[str, Any]) -> bool:
    """Not one of the simulator's deliberate bad records, which are quarantined."""
    insulin, carbs = treatment.get("insulin"), treatment.get("carbs")
    return (
        len(treatment["created_at"]) > 19  # has a zone
        and not (isinstance(insulin, float) and insulin < 0)
        and carbs != 2500
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def new_york(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=11, tz="America/New_York", clock=clock)) as srv:
        yield srv


@pytest.mark.parametrize("page_size", [1, 2, 5])
def test_paging_by_text_loses_and_repeats_nothing(
    new_york: SimulatorServer, clock: Clock, tmp_path: Path, page_size: int
) -> None:
    """Pages move by the stored strings; a string between two bounds the client can send (an offset,
    a space for the `T`) comes back as the top of the next page, not as a second copy."""
    configure_dlt(tmp_path)
    now_ms = int(clock.now * 1000)
    window = FetchWindow(now_ms - 4 * DAY_MS, now_ms + 1)
    config = NightscoutConfig(url=new_york.url, page_size=page_size)
    fetched = fetch_records(config, TREATMENTS_PATH, CREATED_AT, window)
    margin = CREATED_AT.margin_ms
    expected = new_york.simulator.treatments(gte=window.start_ms - margin, lt=window.end_ms + margin, count=0)
    ids = [t["_id"] for t in fetched]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(t["_id"] for t in expected)
    asked = [r for r in new_york.requests if r.path == "/api/v1/treatments.json"]
    assert len(asked) <= 3 * len(expected) + 2
    if page_size == 1:
        # A page of one held back whole: the same bound is asked again with a count of two.
        assert any(r.query["count"] == "2" for r in asked)


def test_a_late_upload_whose_text_sorts_before_the_next_window_is_stored(
    home: Path, new_york: SimulatorServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phone uploads a bolus hours late, stamped in its own -05:00: its instant is inside the next
    run's window, but its text sorts before that window's UTC bound."""
    sim = new_york.simulator
    # Newest first: the latest such upload; some weeks have none (seen at 2026-11-01 in New York).
    recent = sim.treatments(gte=int(clock.now * 1000) - 30 * DAY_MS, count=0)
    late = next(
        t
        for t in recent
        if is_valid(t)
        and uploaded_ms(t) > instant_ms(t["created_at"]) + HOUR_MS
        and t["created_at"].endswith(("-05:00", "-04:00"))
    )
    at = instant_ms(late["created_at"])
    env = {"PHLO_TIMEZONE": "America/New_York"}

    clock.now = uploaded_ms(late) / 1000 - 60  # the run just before the upload
    with make_engine(home, new_york, monkeypatch, **env) as engine:
        first = engine.run_now()
        assert first.status is RunStatus.SUCCEEDED, first.error
        assert engine.query(
            f"select count(*) from raw.treatments where _id = '{late['_id']}'", "dev"
        ).rows == [(0,)]
        watermark = engine.store.watermark("nightscout:treatments")
    assert watermark is not None

    # A lookback that takes the next window back to half an hour before the late bolus's instant.
    lookback_min = max(0, math.ceil((watermark - at) / 60_000)) + 30
    since = watermark + 1 - lookback_min * 60_000
    assert since <= at  # by instant it belongs to the next window ...
    assert late["created_at"] < str(CREATED_AT.bound(since))  # ... by text it sorts before it

    clock.now = uploaded_ms(late) / 1000 + 60
    env["PHLO_LOOKBACK_MINUTES"] = str(lookback_min)
    with make_engine(home, new_york, monkeypatch, **env) as engine:
        second = engine.run_now()
        assert second.status is RunStatus.SUCCEEDED, second.error
        assert second.params["sources_since_ms"]["treatments"] == since
        rows = engine.query(
            f"select treatment_ts from raw.treatments where _id = '{late['_id']}'", "dev"
        ).rows
        assert [int(ts.timestamp() * 1000) for (ts,) in rows] == [at]
        assert engine.query("select count(*) - count(distinct _id) from raw.treatments", "dev").rows == [(0,)]
        silver = engine.query(
            f"select count(*) from silver.fct_treatments where treatment_id = '{late['_id']}'", "main"
        ).rows[0][0]
        counted = float(late.get("insulin") or 0) > 0 or float(late.get("carbs") or 0) > 0
        assert silver == (1 if counted else 0)


def window_of(text_or_ms: str | int, windows: list[tuple[str, str]]) -> int | None:
    """The index of the window whose [start, end) bound texts hold `text_or_ms`'s text."""
    text = text_or_ms if isinstance(text_or_ms, str) else str(CREATED_AT.bound(text_or_ms))
    return next((i for i, (start, end) in enumerate(windows) if start <= text < end), None)


@pytest.mark.parametrize("zone", ["America/New_York", "Pacific/Auckland"])
def test_a_backfill_over_windows_loses_no_treatment_and_stores_each_once(
    home: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    """Day-long windows, offsets of both signs: treatments near a window's edge sort by text into
    the window before (-05:00, or a space for the `T`) or after (+13:00) the one their instant is in."""
    sim = GlucoseSimulator(seed=11, tz=zone, clock=clock)
    local = ZoneInfo(zone)

    def midnight_ms(day: date) -> int:
        return int(datetime.combine(day, datetime.min.time(), local).timestamp() * 1000)

    def local_day(treatment: dict[str, Any]) -> date:
        return datetime.fromisoformat(treatment["created_at"]).astimezone(local).date()

    def day_bounds(day: date) -> tuple[str, str]:
        start, end = midnight_ms(day), midnight_ms(day + timedelta(days=1))
        return str(CREATED_AT.bound(start)), str(CREATED_AT.bound(end))

    # A treatment whose text sorts outside the bounds of its own local day: with a backfill that
    # starts (or ends) on that day, only the margin brings it in.
    today = datetime.fromtimestamp(clock.now, local).date()
    recent = sim.treatments(
        gte=midnight_ms(today - timedelta(days=30)), lt=midnight_ms(today - timedelta(days=3)), count=0
    )
    edge = next(
        t for t in recent if is_valid(t) and window_of(t["created_at"], [day_bounds(local_day(t))]) is None
    )
    day = local_day(edge)
    before = edge["created_at"] < day_bounds(day)[0]
    first_day, last_day = (day, day + timedelta(days=2)) if before else (day - timedelta(days=2), day)
    start_ms, end_ms = midnight_ms(first_day), midnight_ms(last_day + timedelta(days=1))
    with (
        SimulatorServer(sim) as server,
        make_engine(home, server, monkeypatch, PHLO_TIMEZONE=zone, PHLO_BACKFILL_WINDOW_DAYS="1") as engine,
    ):
        run = engine.backfill(first_day.isoformat(), last_day.isoformat())
        assert run.status is RunStatus.SUCCEEDED, run.error
        fetches = [s for s in run.steps if s.name == "fetch" and s.detail.get("source") == "treatments"]
        assert len(fetches) == 3

        around = sim.treatments(gte=start_ms - 3 * DAY_MS, lt=end_ms + 3 * DAY_MS, count=0)
        dated = [t for t in around if len(t["created_at"]) > 19]
        in_range = {t["_id"] for t in dated if start_ms <= instant_ms(t["created_at"]) < end_ms}
        windows = [
            (str(CREATED_AT.bound(w.start_ms)), str(CREATED_AT.bound(w.end_ms)))
            for w in plan_windows(start_ms, end_ms, 1)
        ]
        elsewhere = [
            t
            for t in dated
            if t["_id"] in in_range
            and window_of(t["created_at"], windows) != window_of(instant_ms(t["created_at"]), windows)
        ]
        assert edge in elsewhere and window_of(edge["created_at"], windows) is None

        stored = engine.query("select _id from raw.treatments", "dev").rows
        quarantined = engine.query("select distinct entry_id from raw.treatments_quarantine", "dev").rows
        ids = [r[0] for r in stored]
        assert len(ids) == len(set(ids))  # each once, though the overlapping windows fetched some twice
        assert edge["_id"] in ids
        assert in_range <= set(ids) | {q[0] for q in quarantined}
        # And what the margin reaches beyond the range is kept too, whatever its instant.
        margin = CREATED_AT.margin_ms
        served = sim.treatments(gte=start_ms - margin, lt=end_ms + margin, count=0)
        assert len(set(ids)) + len(quarantined) == len({t["_id"] for t in served})
        assert {r[0] for r in quarantined} == {t["_id"] for t in served if not is_valid(t)}

        silver = engine.query("select treatment_id from silver.fct_treatments", "main").rows
        assert len(silver) == len({r[0] for r in silver})
        counted = {
            t["_id"]
            for t in elsewhere
            if is_valid(t) and (float(t.get("insulin") or 0) > 0 or float(t.get("carbs") or 0) > 0)
        }
        assert counted <= {r[0] for r in silver}
