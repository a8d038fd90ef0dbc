"""The safety checks of the pipeline, each at its threshold: a test here fails when its guard is
removed or loosened (each was checked by breaking the guard; see the mutation table in the tests'
docstrings). Inputs are built around a pinned instant, never today's date."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.errors import PromotionError
from engine.ingest.sources import GLUCOSE, TREATMENTS_SOURCE
from engine.ingest.tables import GLUCOSE_ENTRIES, RAW_TABLES
from engine.lake.promotion import promote
from engine.lake.store import Lake
from engine.pipeline import BatchOutcome, Pipeline, _Totals
from engine.runs.records import RunStatus, Severity
from engine.runs.store import RunStore
from engine.sim.simulator import GlucoseSimulator
from engine.transform.freshness import freshness
from engine.transform.model_files import SQL_DIR
from engine.transform.models import discover_models
from engine.transform.quality import (
    freshness_check,
    quarantine_ratio_check,
    reconciliation_check,
)
from tests.test_lake import glucose_rows

PINNED = datetime(2024, 5, 1, tzinfo=UTC)
"""The instant these tests are built around: the simulator's 'now' and every input's dates; in the past
of any instant the suite runs at (imported readings from the future would be quarantined)."""
PINNED_MS = int(PINNED.timestamp() * 1000)
DAY_MS = 86_400_000
SECOND = timedelta(seconds=1)


# -- inputs ----------------------------------------------------------------------------------------


def sgv_entries(count: int, days_before: int) -> list[dict[str, object]]:
    """`count` simulated sgv entries from `days_before` days before the pinned instant on, oldest first."""
    simulator = GlucoseSimulator(seed=5, clock=lambda: PINNED.timestamp())
    since = PINNED_MS - days_before * DAY_MS
    entries = sorted(simulator.export(since, PINNED_MS, kind="sgv"), key=lambda e: int(e["date"]))
    assert len(entries) >= count, "the simulated days hold too few readings"
    return entries[:count]


def junk_entries(count: int, tag: str) -> list[dict[str, object]]:
    """Entries that validation quarantines: an sgv that is not a number."""
    return [{"_id": f"{tag}{i:020d}", "type": "sgv", "sgv": "??", "date": PINNED_MS} for i in range(count)]


def write_export(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_bytes(gzip.compress(json.dumps(entries).encode()))
    return path


@pytest.fixture
def engine(home: Path) -> Iterator[Engine]:
    """An engine on an empty home; imports need no Nightscout site."""
    with Engine(load_settings()) as engine:
        yield engine


def main_heads(engine: Engine) -> dict[str, int | None]:
    return {table: engine.lake.snapshot_id(table, "main") for table in engine.lake_tables()}


# -- reconciliation: gold's daily counts equal silver's ---------------------------------------------


def _silver(days: list[str]) -> pa.Table:
    return pa.table({"reading_date": pa.array([date.fromisoformat(d) for d in days], pa.date32())})


def _gold(counts: dict[str, int]) -> pa.Table:
    return pa.table(
        {
            "reading_date": pa.array([date.fromisoformat(d) for d in counts], pa.date32()),
            "reading_count": pa.array(list(counts.values()), pa.int64()),
        }
    )


def test_reconciliation_names_each_day_whose_counts_differ() -> None:
    """Mutation: reconciliation_check returns None -> fails."""
    silver = _silver(["2026-04-01"] * 3 + ["2026-04-02"] * 2)
    assert reconciliation_check(silver, _gold({"2026-04-01": 3, "2026-04-02": 2}), "gold") is None
    short = reconciliation_check(silver, _gold({"2026-04-01": 3, "2026-04-02": 1}), "gold")
    assert short is not None and short.severity is Severity.ERROR
    assert short.check == "reconciliation_daily_counts" and short.failing_count == 1
    assert short.samples[0]["silver"] == 2 and short.samples[0]["gold"] == 1
    # A day missing from gold, and a day gold has without any reading: both count.
    missing = reconciliation_check(silver, _gold({"2026-04-01": 3}), "gold")
    assert missing is not None and missing.failing_count == 1
    extra = reconciliation_check(silver, _gold({"2026-04-01": 3, "2026-04-02": 2, "2026-04-03": 4}), "gold")
    assert extra is not None and extra.failing_count == 1


def test_a_gold_model_that_miscounts_holds_the_run(home: Path, tmp_path: Path) -> None:
    """The gate runs on a real build: a daily model counting one reading too many is held, main stays.

    Mutation: reconciliation_check returns None (or the gate no longer calls it) -> fails.
    """
    models_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, models_dir)
    daily = models_dir / "gold" / "fct_daily_glucose_metrics.sql"
    honest = "cast(d.reading_count as bigint) as reading_count"
    assert honest in daily.read_text()
    daily.write_text(
        daily.read_text().replace(honest, "cast(d.reading_count + 1 as bigint) as reading_count")
    )
    export = write_export(tmp_path / "two-days.json.gz", sgv_entries(2 * 288, days_before=4))
    with Engine(load_settings()) as engine:
        engine.become_writer()
        pipeline = Pipeline(
            engine.settings,
            engine.store,
            engine.lake,
            engine.nightscout_config,
            tables=engine.lake_tables(),
            models=discover_models(models_dir, sources=[t.name for t in RAW_TABLES]),
        )
        run = pipeline.import_file(export)
        assert run.status is RunStatus.HELD, run.error
        assert any("reconciliation_daily_counts" in b for b in run.summary["blocking"])
        failed = {(c.check, c.severity) for c in engine.quality(run.id)}
        assert ("reconciliation_daily_counts", "error") in failed
        assert engine.last_promotion() is None
        assert engine.query("select count(*) from raw.glucose_entries", "main").rows[0][0] == 0


# -- the quarantine ratio ---------------------------------------------------------------------------


def test_quarantine_ratio_holds_just_over_five_percent() -> None:
    """Mutation: QUARANTINE_RATIO_MAX 0.05 -> 0.15 (or any other value) -> fails."""
    assert quarantine_ratio_check(1000, 49, "raw.glucose_entries") is None
    assert quarantine_ratio_check(1000, 50, "raw.glucose_entries") is None  # exactly 5 % passes
    over = quarantine_ratio_check(1000, 51, "raw.glucose_entries")
    assert over is not None and over.severity is Severity.ERROR
    assert over.samples[0] == {"received": 1000, "quarantined": 51, "ratio": 0.051}
    assert quarantine_ratio_check(0, 0, "raw.glucose_entries") is None


def test_imports_just_under_and_just_over_the_ratio(engine: Engine, tmp_path: Path) -> None:
    """4.9 % quarantined promotes; 5.1 % holds the run and leaves main where it was.

    Mutation: QUARANTINE_RATIO_MAX 0.05 -> 0.15 -> the second import promotes, fails.
    """
    good = sgv_entries(1900, days_before=8)
    under = engine.import_file(write_export(tmp_path / "under.json.gz", good[:951] + junk_entries(49, "u")))
    assert under.status is RunStatus.SUCCEEDED, under.error
    assert (under.summary["fetched"], under.summary["quarantined"]) == (1000, 49)
    promoted = main_heads(engine)
    over = engine.import_file(write_export(tmp_path / "over.json.gz", good[951:] + junk_entries(51, "o")))
    assert (over.summary["fetched"], over.summary["quarantined"]) == (1000, 51)
    assert over.status is RunStatus.HELD
    assert over.summary["blocking"] == ["raw.glucose_entries: quarantine_ratio (51 failing)"]
    assert main_heads(engine) == promoted


def test_treatments_need_a_hundred_records_before_their_ratio_holds_a_run() -> None:
    """A handful of treatments a day: 99 records, all bad, hold nothing; from 100 on the ratio counts.

    Mutation: TREATMENTS_SOURCE.ratio_min_records 100 -> 1 (or the minimum ignored) -> fails;
    100 -> 101 -> fails too.
    """

    def ratio(fetched: int, quarantined: int, source: object = TREATMENTS_SOURCE) -> object:
        totals = _Totals()
        totals.add(BatchOutcome(fetched, fetched - quarantined, 0, quarantined, None), source)  # type: ignore[arg-type]
        return totals.quarantine_ratio(source)  # type: ignore[arg-type]

    assert ratio(99, 99) is None
    assert ratio(100, 5) is None
    held = ratio(100, 6)
    assert held is not None and held.table == TREATMENTS_SOURCE.table.name  # type: ignore[attr-defined]
    # Glucose readings are judged from the first record.
    assert ratio(1, 1, GLUCOSE) is not None


# -- promotion refuses diverged branches --------------------------------------------------------------


def test_promotion_refuses_when_main_is_not_an_ancestor_of_dev(tmp_path: Path) -> None:
    """main got a commit dev does not have: promoting would drop it, so nothing moves.

    Mutation: plan_moves no longer raises for a main outside dev's lineage -> fails.
    """
    lake = Lake(tmp_path / "lake")
    store = RunStore(tmp_path / "runs.sqlite")
    table = GLUCOSE_ENTRIES.name
    lake.ensure_table(GLUCOSE_ENTRIES)
    lake.append(GLUCOSE_ENTRIES, glucose_rows(PINNED, 12))
    first = promote(lake, store, None, [table])
    assert first is not None and lake.snapshot_id(table, "main") == lake.snapshot_id(table, "dev")
    main_only = lake.append(GLUCOSE_ENTRIES, glucose_rows(PINNED + timedelta(hours=1), 12), branch="main")
    dev_only = lake.append(GLUCOSE_ENTRIES, glucose_rows(PINNED + timedelta(hours=2), 12))
    assert main_only is not None and dev_only is not None and main_only != dev_only
    with pytest.raises(PromotionError) as refused:
        promote(lake, store, None, [table])
    assert f"main (snapshot {main_only}) is not an ancestor of dev" in refused.value.message
    assert lake.snapshot_id(table, "main") == main_only
    assert [p.id for p in store.promotions(limit=5)] == [first.id]
    store.close()


# -- a run with nothing new after a held run -----------------------------------------------------------


def test_a_run_with_nothing_new_after_a_held_run_is_held_too(engine: Engine, tmp_path: Path) -> None:
    """The held verdict stands until a gate passes: a later run that gates nothing does not promote.

    Mutation: _maybe_promote ignores store.standing_gate_errors() -> the third run promotes, fails.
    """
    good = write_export(tmp_path / "good.json.gz", sgv_entries(288, days_before=3))
    assert engine.import_file(good).status is RunStatus.SUCCEEDED
    promoted = main_heads(engine)
    last = engine.last_promotion()
    # Only junk: nothing reaches raw, the quarantine table grows on dev, the ratio holds the run.
    held = engine.import_file(write_export(tmp_path / "junk.json.gz", junk_entries(150, "j")))
    assert held.status is RunStatus.HELD
    assert any(d.changed for d in engine.diff())
    again = engine.import_file(good)  # every entry is already stored: nothing new, no gate
    assert again.summary["stored"] == 0 and again.summary["quarantined"] == 0
    assert "gate" not in again.summary
    assert again.status is RunStatus.HELD
    assert again.summary["blocking"] == held.summary["blocking"]
    assert main_heads(engine) == promoted
    assert engine.last_promotion() == last


# -- freshness at its thresholds ------------------------------------------------------------------


def test_freshness_gate_warns_after_an_hour_and_fails_after_a_day() -> None:
    """Mutation: FRESH_WARNING 1 h -> 2 h, or FRESH_ERROR 24 h -> 48 h, or `<=` -> `<` -> fails."""
    newest = PINNED - timedelta(days=3)

    def severity(age: timedelta) -> Severity | None:
        result = freshness_check(newest, newest + age, "silver.fct_glucose_readings")
        return None if result is None else result.severity

    assert severity(timedelta(hours=1) - SECOND) is None
    assert severity(timedelta(hours=1)) is None
    assert severity(timedelta(hours=1) + SECOND) is Severity.WARNING
    assert severity(timedelta(hours=24)) is Severity.WARNING
    assert severity(timedelta(hours=24) + SECOND) is Severity.ERROR
    missing = freshness_check(None, PINNED, "silver.fct_glucose_readings")
    assert missing is not None and missing.severity is Severity.ERROR


def test_freshness_alert_levels_at_their_thresholds() -> None:
    """What the dashboard shows and the daemon alerts on. Mutation: the 24 h error moved -> fails."""
    newest_ms = PINNED_MS - 3 * DAY_MS
    newest = datetime.fromtimestamp(newest_ms / 1000, UTC)
    hour = timedelta(hours=1)

    def level(age: timedelta) -> str:
        return freshness(newest_ms, newest + age, warning_after=hour).level

    assert level(hour - SECOND) == "ok"
    assert level(hour) == "ok"
    assert level(hour + SECOND) == "warning"
    assert level(timedelta(hours=24)) == "warning"
    assert level(timedelta(hours=24) + SECOND) == "error"
    assert "59 min" in freshness(newest_ms, newest + hour - SECOND, warning_after=hour).message
    assert freshness(None, PINNED, warning_after=hour).level == "unknown"
