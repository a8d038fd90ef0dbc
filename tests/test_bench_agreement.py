"""bench/run.py's check that iglu-python's daily metrics equal ours, on constructed days.

A day of one reading has no sample SD or CV on either side (CI once failed when the simulator's
clock put a single reading before local midnight): undefined on both sides agrees, on one side
only, or a wrong value, does not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

pytest.importorskip("iglu_python", reason="iglu-python is in the bench extra: uv run --extra bench pytest")

from bench.run import IGLU_METRICS, iglu_agreement, metrics_iglu


def readings() -> pa.Table:
    """A full day of 5-minute readings, then one reading alone on the next local day (Berlin)."""
    start = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 00:00 in Berlin
    times = [start + timedelta(minutes=5 * i) for i in range(288)] + [start + timedelta(days=1, minutes=2)]
    values = [60 + (i * 7) % 220 for i in range(288)] + [123]
    return pa.table(
        {
            "reading_ts": pa.array(times, pa.timestamp("us", tz="UTC")),
            "glucose_mg_dl": pa.array(values, pa.int32()),
        }
    )


def ours_from(theirs, drop: str | None = None, nudge: str | None = None) -> pa.Table:
    """Our gold columns, taken from iglu's frame: SQL NULL where iglu has NaN, as the model gives."""
    rows = []
    for day, ref in theirs.iterrows():
        row: dict[str, object] = {"reading_date": day}
        for column, pick in IGLU_METRICS.items():
            value = float(pick(ref))
            row[column] = None if value != value else value
        if day == drop:
            row["stddev_glucose_mg_dl"] = None
        if nudge is not None:
            row[nudge] = float(row[nudge] or 0.0) + 0.5
        rows.append(row)
    return pa.Table.from_pylist(rows)


def test_one_reading_day_is_undefined_on_both_sides_and_agrees() -> None:
    _, theirs = metrics_iglu(readings())
    assert len(theirs) == 2
    lone = theirs.loc["2026-11-25"]
    assert lone["SD"] != lone["SD"]  # iglu: NaN for one reading
    agree, diffs = iglu_agreement(ours_from(theirs), theirs)
    assert agree, diffs
    assert max(diffs.values()) == 0.0


def test_undefined_on_one_side_only_disagrees() -> None:
    _, theirs = metrics_iglu(readings())
    agree, diffs = iglu_agreement(ours_from(theirs, drop="2026-11-24"), theirs)
    assert not agree and diffs["stddev_glucose_mg_dl"] == float("inf")


def test_a_wrong_value_disagrees() -> None:
    _, theirs = metrics_iglu(readings())
    agree, diffs = iglu_agreement(ours_from(theirs, nudge="gri"), theirs)
    assert not agree and diffs["gri"] == pytest.approx(0.5)
