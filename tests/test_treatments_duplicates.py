"""Duplicate treatment uploads (a pump uploader and a phone app, seconds apart, different _ids)
collapse in bronze, so the daily totals and the effectiveness mart count each bolus once."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from tests.test_treatments import MART, build_layers, constructed_day, load_raw, mart_rows

GOLD = "gold.fct_daily_treatment_totals"


@pytest.fixture
def engine(home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NIGHTSCOUT_URL", "http://127.0.0.1:9")
    with Engine(load_settings()) as engine:
        yield engine


def totals(engine: Engine) -> list[tuple[Any, ...]]:
    return engine.query(
        f"select reading_date, total_insulin_units, total_carbs_g, bolus_count, carb_entry_count from {GOLD}"
        " order by reading_date",
        "dev",
    ).rows


def copy(treatment: dict[str, Any], _id: str, created_at: str, entered_by: str) -> dict[str, Any]:
    return {**treatment, "_id": _id, "created_at": created_at, "enteredBy": entered_by}


def test_a_bolus_uploaded_twice_counts_once_and_one_given_twice_counts_twice(engine: Engine) -> None:
    readings, treatments = constructed_day()
    by_id = {t["_id"]: t for t in treatments}
    a, b, e = by_id["a" * 24], by_id["b" * 24], by_id["e" * 24]
    extra = [
        # Bolus A again from the phone, 20 s later, in its own offset and with a smaller _id: the
        # earlier upload is kept whatever the ids.
        copy(a, "0" * 23 + "1", "2026-03-10T09:00:20+01:00", "AndroidAPS"),
        # Bolus B again at the very same second: the smaller _id is kept.
        copy(b, "0" * 24, "2026-03-10T13:30:00.000Z", "xdrip"),
        # The snack bolus given again five minutes later: a second bolus.
        copy(e, "f" * 24, "2026-03-10T22:05:00Z", "careportal"),
    ]
    load_raw(engine, readings, treatments + extra)
    build_layers(engine, None)

    rows = mart_rows(engine)
    assert set(rows) == {"a" * 24, "0" * 24, "e" * 24, "f" * 24}
    assert rows["0" * 24]["event_type"] == "Correction Bolus"
    assert (rows["0" * 24]["glucose_before"], rows["0" * 24]["glucose_after"]) == (120.0, 106.0)
    assert rows["a" * 24]["glucose_reduction"] == 63.0  # as without the copy
    assert totals(engine) == [(date(2026, 3, 10), 9.0, 85.0, 4, 4)]  # 5 + 2 + 1 + 1; 50 + 15 + 10 + 10
    bronze = engine.query("select count(*) from bronze.stg_treatments", "dev").rows[0][0]
    assert bronze == len(treatments) + len(extra) - 2


def test_copies_collapse_the_same_whatever_order_they_arrive_in(
    engine: Engine, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy as for glucose: copies at 0, 30 and 70 s keep the first and the third (70 s after the
    first kept one); equal types and doses only: a different dose 10 s later is its own bolus."""
    base = {"eventType": "Meal Bolus", "insulin": 3.0, "carbs": 30, "enteredBy": "pump"}
    uploads = [
        {**base, "_id": "3" * 24, "created_at": "2026-03-12T12:00:00Z"},
        {**base, "_id": "1" * 24, "created_at": "2026-03-12T12:00:30Z"},
        {**base, "_id": "2" * 24, "created_at": "2026-03-12T12:01:10Z"},
        {**base, "_id": "4" * 24, "created_at": "2026-03-12T12:00:10Z", "insulin": 3.5},
        {**base, "_id": "5" * 24, "created_at": "2026-03-12T12:00:20Z", "eventType": "bolus wizard"},
    ]
    load_raw(engine, [], list(reversed(uploads)))
    build_layers(engine, None)
    kept = [
        r[0] for r in engine.query("select treatment_id from bronze.stg_treatments order by 1", "dev").rows
    ]
    assert kept == ["2" * 24, "3" * 24, "4" * 24, "5" * 24]
    # The bolus wizard beside the 3 U bolus of 30 g is its calculation: kept, not counted again.
    assert totals(engine) == [(date(2026, 3, 12), 9.5, 90.0, 3, 3)]


def test_a_copy_across_a_month_edge_collapses_in_either_month_built_alone(engine: Engine) -> None:
    """The copy a second after midnight belongs to April; the bolus kept is March's. Building a month
    on its own reads its neighbours, so each month's build agrees with the full build."""
    bolus = {
        "_id": "a" * 24,
        "eventType": "Correction Bolus",
        "created_at": "2026-03-31T23:59:50Z",
        "insulin": 1.5,
    }
    late_copy = copy(bolus, "b" * 24, "2026-04-01T00:00:05Z", "AndroidAPS")
    load_raw(engine, [], [late_copy])
    build_layers(engine, {"2026-04"})
    assert totals(engine) == [(date(2026, 4, 1), 1.5, 0.0, 1, 0)]  # alone, the copy is the bolus

    # The earlier upload arrives: a run marks March pending, and April with it (within 4 h of it).
    load_raw(engine, [], [bolus])
    build_layers(engine, {"2026-03", "2026-04"})
    assert totals(engine) == [(date(2026, 3, 31), 1.5, 0.0, 1, 0)]
    assert set(mart_rows(engine)) == {"a" * 24}

    for months in ({"2026-04"}, {"2026-03"}, None):
        build_layers(engine, months)
        assert totals(engine) == [(date(2026, 3, 31), 1.5, 0.0, 1, 0)], months
        assert engine.query(f"select treatment_id from {MART}", "dev").rows == [("a" * 24,)], months
