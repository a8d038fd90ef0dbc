"""Quality gates hold bad batches back from main; promotion is all-or-nothing and survives kill -9."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api.facade import Engine, exit_code
from engine.config import load_settings
from engine.errors import PromotionError
from engine.runs.records import PromotionState, RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import START, START_S

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    pinned = START_S - 2 * 3600
    with SimulatorServer(GlucoseSimulator(seed=5, clock=lambda: pinned)) as srv:
        yield srv


def engine_for(home: Path, server: SimulatorServer, monkeypatch: pytest.MonkeyPatch, **env: str) -> Engine:
    monkeypatch.setenv("NIGHTSCOUT_URL", server.url)
    monkeypatch.setenv("PHLO_INITIAL_DAYS", "2")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Engine(load_settings())


def scalar(engine: Engine, sql: str, branch: str) -> Any:
    return engine.query(sql, branch).rows[0][0]


def write_export(path: Path, entries: list[object]) -> Path:
    path.write_bytes(gzip.compress(json.dumps(entries).encode()))
    return path


def test_bad_batch_is_held_then_fixed_batch_promotes(
    home: Path, server: SimulatorServer, monkeypatch, tmp_path: Path
) -> None:
    with engine_for(home, server, monkeypatch) as engine:
        first = engine.run_now()
        assert first.status is RunStatus.SUCCEEDED, first.error
        main_count = scalar(engine, "select count(*) from raw.glucose_entries", "main")
        main_days = scalar(engine, "select count(*) from gold.fct_daily_glucose_metrics", "main")
        assert main_count > 0 and main_days >= 2

        # A batch of older readings in which a fifth of the entries are junk: over the 5 % ratio.
        now_ms = int(START_S * 1000)
        good = [
            e for e in server.simulator.export(now_ms - 5 * DAY_MS, now_ms - 4 * DAY_MS) if e["type"] == "sgv"
        ]
        junk: list[object] = [
            {"_id": f"junk{i:020d}", "type": "sgv", "sgv": "??", "date": now_ms} for i in range(60)
        ]
        held = engine.import_file(write_export(tmp_path / "bad.json.gz", good + junk))
        assert held.status is RunStatus.HELD
        assert exit_code(held) == 3
        assert any("quarantine_ratio" in b for b in held.summary["blocking"])
        # main did not move: the same rows, the same days.
        assert scalar(engine, "select count(*) from raw.glucose_entries", "main") == main_count
        assert scalar(engine, "select count(*) from gold.fct_daily_glucose_metrics", "main") == main_days
        assert scalar(engine, "select count(*) from raw.glucose_entries", "dev") == main_count + len(good)
        with pytest.raises(PromotionError) as refused:
            engine.promote()
        assert "quarantine_ratio" in refused.value.message
        # Only the gate's own failures are named: the checks that quarantined the junk held nothing.
        recorded = engine.store.checks(held.id)
        assert any(c.severity == "error" and c.check != "quarantine_ratio" for c in recorded)
        standing = engine.store.standing_gate_errors()
        assert standing == held.summary["blocking"]
        assert standing and all("quarantine_ratio" in b for b in standing)

        fixed = engine.import_file(write_export(tmp_path / "fixed.json.gz", good))
        assert fixed.status is RunStatus.SUCCEEDED, fixed.error
        assert fixed.summary["gate"] == "passed"
        assert scalar(engine, "select count(*) from raw.glucose_entries", "main") == main_count + len(good)
        assert scalar(engine, "select count(*) from gold.fct_daily_glucose_metrics", "main") > main_days
        assert not any(d.changed for d in engine.diff())


def test_stale_site_is_an_error_gate_for_scheduled_runs(home: Path, monkeypatch) -> None:
    stale = START_S - 2 * 86400
    with (
        SimulatorServer(GlucoseSimulator(seed=9, clock=lambda: stale)) as srv,
        engine_for(home, srv, monkeypatch, PHLO_INITIAL_DAYS="3") as engine,
    ):
        run = engine.run_now()
        assert run.status is RunStatus.HELD
        checks = {(c.check, c.severity) for c in engine.quality(run.id)}
        assert ("freshness", "error") in checks
        assert scalar(engine, "select count(*) from raw.glucose_entries", "main") == 0
        assert scalar(engine, "select count(*) from raw.glucose_entries", "dev") > 0
        # Still nothing new a run later: still held, for the same reason.
        again = engine.run_now()
        assert again.status is RunStatus.HELD
        assert ("freshness", "error") in {(c.check, c.severity) for c in engine.quality(again.id)}


def test_backfill_of_history_skips_freshness(home: Path, server: SimulatorServer, monkeypatch) -> None:
    from datetime import timedelta

    with engine_for(home, server, monkeypatch) as engine:
        day = (START - timedelta(days=30)).date()
        run = engine.backfill(day.isoformat(), (day + timedelta(days=2)).isoformat())
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert "freshness" not in {c.check for c in engine.quality(run.id)}
        assert scalar(engine, "select count(*) from gold.fct_daily_glucose_metrics", "main") == 3


_KILL_DURING_PROMOTION = """
import os, signal, sys
from engine.config import load_settings
from engine.api.facade import Engine
from engine.lake.store import Lake

moved = []
original = Lake.set_branch

def set_branch_then_die(self, name, branch, snapshot_id):
    original(self, name, branch, snapshot_id)
    moved.append(name)
    if len(moved) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)

Lake.set_branch = set_branch_then_die
with Engine(load_settings()) as engine:
    engine.promote()
"""


def test_kill_9_during_promotion_leaves_main_consistent(
    home: Path, server: SimulatorServer, monkeypatch, tmp_path: Path
) -> None:
    with engine_for(home, server, monkeypatch, PHLO_AUTO_PROMOTE="false") as engine:
        assert engine.run_now().status is RunStatus.SUCCEEDED
        tables = [d.table for d in engine.diff() if d.changed]
        assert len(tables) >= 6
        dev_heads = {t: engine.lake.snapshot_id(t, "dev") for t in tables}
    script = tmp_path / "kill_promote.py"
    script.write_text(_KILL_DURING_PROMOTION)
    proc = subprocess.run(
        [sys.executable, str(script), "3"],
        env=dict(os.environ),
        cwd=Path(__file__).parent.parent,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL
    with engine_for(home, server, monkeypatch, PHLO_AUTO_PROMOTE="false") as engine:
        (pending,) = engine.store.promotions(PromotionState.PENDING)
        moved = [t for t in tables if engine.lake.snapshot_id(t, "main") == dev_heads[t]]
        assert 0 < len(moved) < len(tables)
        # Readers of main use the last finished promotion: none yet, so main reads as before.
        assert engine.last_promotion() is None
        assert scalar(engine, "select count(*) from raw.glucose_entries", "main") == 0
        assert scalar(engine, "select count(*) from gold.fct_daily_glucose_metrics", "main") == 0
        engine.promote()  # the writer repairs first: it finishes the interrupted promotion
        assert engine.store.promotions(PromotionState.PENDING) == []
        assert engine.store.promotions(limit=5)[-1].id == pending.id
        for table in tables:
            assert engine.lake.snapshot_id(table, "main") == dev_heads[table]
        last = engine.last_promotion()
        assert last is not None and all(last.snapshot(t) == dev_heads[t] for t in tables)
        assert scalar(engine, "select count(*) from raw.glucose_entries", "main") == scalar(
            engine, "select count(*) from raw.glucose_entries", "dev"
        )


def test_nightscout_fixture_shape(home: Path, server: SimulatorServer, monkeypatch, tmp_path: Path) -> None:
    """cgm-remote-monitor's tests/fixtures/example.json: 30 string sgvs, 12 error code "5", a 6 h gap."""
    # 01:00 UTC three days ago: the errors and, six hours later, the readings share one local day.
    base = (int(START_S * 1000) // DAY_MS - 3) * DAY_MS + HOUR_MS
    entries: list[dict[str, Any]] = []
    for i in range(12):
        entries.append(
            {
                "_id": f"{i:024x}",
                "device": "dexcom",
                "date": base + i * 300_000,
                "sgv": "5",
                "direction": "NOT COMPUTABLE",
                "type": "sgv",
            }
        )
    start = base + 11 * 300_000 + 6 * HOUR_MS
    for i in range(18):
        entries.append(
            {
                "_id": f"{100 + i:024x}",
                "device": "dexcom",
                "date": start + i * 300_000,
                "sgv": str(100 + 3 * i),
                "direction": "Flat",
                "type": "sgv",
            }
        )
    with engine_for(home, server, monkeypatch) as engine:
        run = engine.import_file(write_export(tmp_path / "example.json.gz", entries[::-1]))
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert scalar(engine, "select count(*) from silver.fct_glucose_readings", "main") == 18
        assert (
            scalar(engine, "select sum(sensor_error_count) from gold.fct_daily_glucose_metrics", "main") == 12
        )
        assert (
            scalar(engine, "select count(*) from bronze.stg_glucose_entries where is_sensor_error", "main")
            == 12
        )


def test_weekly_maintenance_compacts_and_keeps_both_branches(
    home: Path, server: SimulatorServer, monkeypatch, tmp_path: Path
) -> None:
    import sqlite3

    now_ms = int(START_S * 1000)
    with engine_for(home, server, monkeypatch) as engine:
        assert engine.run_now().status is RunStatus.SUCCEEDED
        # Three imports with a quarantined entry each: three small files in the quarantine table.
        for day in range(3):
            good = [
                e
                for e in server.simulator.export(now_ms - (9 - day) * DAY_MS, now_ms - (8 - day) * DAY_MS)
                if e["type"] == "sgv"
            ]
            bad: list[object] = [{"_id": f"bad{day:021d}", "type": "sgv", "sgv": "x", "date": now_ms}]
            engine.import_file(write_export(tmp_path / f"d{day}.json.gz", good + bad))
        before = {
            b: scalar(engine, "select count(*) from raw.glucose_quarantine", b) for b in ("dev", "main")
        }
        files_before = len(engine.lake.data_files("raw.glucose_quarantine", "dev"))
        assert files_before >= 3
    # Pretend the last expiry and maintenance were more than a week ago.
    with sqlite3.connect(home / "runs.sqlite") as con:
        con.execute("update watermarks set value = 0 where source like 'maintenance:%'")
    with engine_for(home, server, monkeypatch) as engine:
        run = engine.run_now()
        assert run.status is RunStatus.SUCCEEDED, run.error
        step = next(s for s in run.steps if s.name == "maintenance")
        assert step.status.value == "succeeded"
        assert len(engine.lake.data_files("raw.glucose_quarantine", "dev")) == 1
        for branch, count in before.items():
            assert scalar(engine, "select count(*) from raw.glucose_quarantine", branch) == count
        assert scalar(engine, "select count(*) - count(distinct _id) from raw.glucose_entries", "main") == 0
        assert not any(d.changed for d in engine.diff() if d.table != "raw.glucose_quarantine")
