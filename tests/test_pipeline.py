"""Ingest runs end to end: the simulator over real HTTP, real Iceberg tables and DuckDB in tmp_path."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api.facade import Engine, exit_code
from engine.config import load_settings
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import Clock, follow

HOUR = 3600.0
DAY_MS = 86_400_000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=11, clock=clock)) as srv:
        yield srv


def make_engine(home: Path, server: SimulatorServer, monkeypatch: pytest.MonkeyPatch, **env: str) -> Engine:
    monkeypatch.setenv("NIGHTSCOUT_URL", server.url)
    monkeypatch.setenv("PHLO_INITIAL_DAYS", "3")
    monkeypatch.setenv("PHLO_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PHLO_LOOKBACK_MINUTES", "0")
    monkeypatch.setenv("PHLO_REREAD_HOURS", "0")  # these tests count what a run fetches past the watermark
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Engine(load_settings(), clock=follow(server.simulator))


def count(engine: Engine, sql: str, branch: str = "dev") -> Any:
    return engine.query(sql, branch).rows[0][0]


def expected_ids(server: SimulatorServer, since_ms: int, until_ms: int) -> set[str]:
    entries = server.simulator.entries(kind="sgv", gte=since_ms, lt=until_ms, count=10**9)
    return {e["_id"] for e in entries}


def stored_ids(engine: Engine) -> set[str]:
    return {r[0] for r in engine.query("select _id from raw.glucose_entries", "dev").rows}


def test_first_run_then_incremental_then_rerun(
    home: Path, server: SimulatorServer, clock: Clock, monkeypatch
) -> None:
    with make_engine(home, server, monkeypatch) as engine:
        first = engine.run_now()
        assert first.status is RunStatus.SUCCEEDED, first.error
        assert exit_code(first) == 0
        now_ms = int(clock.now * 1000)
        # The pipeline's window starts from the real clock; the simulator's 'now' ends it.
        want = expected_ids(server, first.params["since_ms"], now_ms + 1)
        got = stored_ids(engine)
        quarantined = count(engine, "select count(*) from raw.glucose_quarantine")
        # Every reading of the three days is stored or quarantined, nothing else.
        assert len(got) + quarantined == len(want)
        assert got <= want
        assert 3 * 288 * 0.8 < len(got) < 3 * 288 * 1.1

        snapshot = engine.lake.snapshot_id("raw.glucose_entries", "dev")
        rerun = engine.run_now()
        assert rerun.status is RunStatus.SUCCEEDED
        assert rerun.summary["stored"] == 0
        assert engine.lake.snapshot_id("raw.glucose_entries", "dev") == snapshot

        clock.now += HOUR
        hourly = engine.run_now()
        assert hourly.status is RunStatus.SUCCEEDED
        fetched = sum(
            s.rows or 0 for s in hourly.steps if s.name == "fetch" and s.detail["source"] == "entries"
        )
        new = expected_ids(server, now_ms + 1, int(clock.now * 1000) + 1)
        # Only the new hour: 12 readings 5 min apart, fewer in a signal loss or a sensor warm-up.
        assert fetched == len(new) <= 13
        assert stored_ids(engine) >= got | (
            new - {q[0] for q in engine.query("select entry_id from raw.glucose_quarantine", "dev").rows}
        )
        assert count(engine, "select count(*) - count(distinct _id) from raw.glucose_entries") == 0
        # Gates passed, so main was promoted to dev's snapshot.
        assert hourly.summary["gate"] == "passed"
        assert count(engine, "select count(*) from raw.glucose_entries", "main") == len(stored_ids(engine))


def test_without_auto_promote_main_stays_until_promoted(
    home: Path, server: SimulatorServer, monkeypatch
) -> None:
    with make_engine(home, server, monkeypatch, PHLO_AUTO_PROMOTE="false") as engine:
        run = engine.run_now()
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert count(engine, "select count(*) from raw.glucose_entries", "main") == 0
        assert count(engine, "select count(*) from gold.fct_daily_glucose_metrics", "main") == 0
        diffs = {d.table: d for d in engine.diff()}
        assert diffs["raw.glucose_entries"].rows_added == len(stored_ids(engine))
        assert diffs["gold.fct_daily_glucose_metrics"].rows_added >= 3
        assert diffs["raw.glucose_entries"].days_touched
        record = engine.promote()
        assert record is not None
        assert count(engine, "select count(*) from raw.glucose_entries", "main") == len(stored_ids(engine))
        assert not any(d.changed for d in engine.diff())


@pytest.mark.parametrize(
    "fault", ["http_500", "http_502", "http_503", "http_429", "truncated", "html", "slow"]
)
def test_fault_fails_clearly_then_catch_up_has_no_gaps(
    home: Path, server: SimulatorServer, clock: Clock, monkeypatch, fault: str
) -> None:
    with make_engine(home, server, monkeypatch, PHLO_REQUEST_TIMEOUT_S="1") as engine:
        assert engine.run_now().status is RunStatus.SUCCEEDED
        clock.now += 3 * HOUR
        options = {"seconds": 3} if fault == "slow" else {}
        server.inject(fault, times=10, **options)
        failed = engine.run_now()
        assert failed.status is RunStatus.FAILED
        assert exit_code(failed) == 1
        assert failed.error and "fetch" in failed.error
        assert (
            server.url.split("//")[1] in failed.error
            or "Nightscout" in failed.error
            or "site" in failed.error
        )
        server.clear_faults()
        good = engine.run_now()
        assert good.status is RunStatus.SUCCEEDED, good.error
        now_ms = int(clock.now * 1000)
        first_run = engine.list_runs()[-1]
        want = expected_ids(server, first_run.params["since_ms"], now_ms + 1)
        quarantined = {r[0] for r in engine.query("select entry_id from raw.glucose_quarantine", "dev").rows}
        assert want - quarantined == stored_ids(engine)


def test_auth_sent_and_never_recorded(home: Path, clock: Clock, monkeypatch, capfd) -> None:
    token, secret = "tok-SEKRIT-0001", "api-SEKRIT-0002"
    env = {"NIGHTSCOUT_TOKEN": token, "NIGHTSCOUT_API_SECRET": secret}
    with (
        SimulatorServer(GlucoseSimulator(seed=3, clock=clock), token=token, api_secret=secret) as srv,
        make_engine(home, srv, monkeypatch, **env) as engine,
    ):
        run = engine.run_now()
        assert run.status is RunStatus.SUCCEEDED, run.error
        api = [r for r in srv.requests if r.path.startswith("/api/v1/entries")]
        assert api and all(r.query.get("token") == token for r in api)
        import hashlib

        digest = hashlib.sha1(secret.encode()).hexdigest()
        assert all(r.headers.get("api-secret") == digest for r in api)
        srv.inject("http_500", times=10)
        clock.now += HOUR
        failed = engine.run_now()
        assert failed.status is RunStatus.FAILED
        blob = json.dumps(engine.status().to_json()) + json.dumps([r.to_json() for r in engine.list_runs()])
        blob += (home / "runs.sqlite").read_bytes().decode("latin-1")
        out = capfd.readouterr()
        for text in (blob, out.out, out.err):
            for s in (token, secret, digest):
                assert s not in text


def test_wrong_token_is_a_clear_failed_run(home: Path, clock: Clock, monkeypatch) -> None:
    with (
        SimulatorServer(GlucoseSimulator(seed=3, clock=clock), token="right") as srv,
        make_engine(home, srv, monkeypatch, NIGHTSCOUT_TOKEN="wrong-token-xyz") as engine,
    ):
        run = engine.run_now()
        assert run.status is RunStatus.FAILED
        assert "NIGHTSCOUT_TOKEN" in (run.error or "") + (run.hint or "")
        assert "wrong-token-xyz" not in (run.error or "") + (run.hint or "")


def test_import_gzip_export_with_bad_entries(
    home: Path, server: SimulatorServer, clock: Clock, monkeypatch, tmp_path: Path
) -> None:
    now_ms = int(clock.now * 1000)
    export = server.simulator.export(now_ms - 2 * DAY_MS, now_ms)
    good = [e for e in export if e.get("type") == "sgv"]
    bad: list[object] = [
        {"_id": "bad-sgv-000000000000001", "type": "sgv", "sgv": "abc", "date": now_ms - 1000, "device": "x"},
        {"_id": "bad-date-00000000000001", "type": "sgv", "sgv": 120, "date": now_ms + 10 * DAY_MS},
        {"type": "sgv", "sgv": 120, "date": now_ms - 5000},
        "not an entry",
    ]
    path = tmp_path / "entries.json.gz"
    path.write_bytes(gzip.compress(json.dumps(export + bad).encode()))
    with make_engine(home, server, monkeypatch) as engine:
        run = engine.import_file(path)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.summary["fetched"] == len(export) + len(bad)
        stored = count(engine, "select count(*) from raw.glucose_entries")
        quarantine = engine.query(
            'select entry_id, "check", reason, payload from raw.glucose_quarantine', "dev"
        )
        assert stored + len(quarantine.rows) == len(export) + len(bad)
        ids = {r[0] for r in quarantine.rows}
        assert {"bad-sgv-000000000000001", "bad-date-00000000000001"} <= ids
        assert all(r[2] for r in quarantine.rows)
        assert {e["_id"] for e in good} <= stored_ids(engine) | ids
        again = engine.import_file(path)
        assert again.summary["stored"] == 0
        assert count(engine, "select count(*) from raw.glucose_quarantine") == len(quarantine.rows)


def test_backfill_windows_and_watermark(
    home: Path, server: SimulatorServer, clock: Clock, monkeypatch
) -> None:
    from datetime import UTC, datetime, timedelta

    with make_engine(home, server, monkeypatch, PHLO_BACKFILL_WINDOW_DAYS="7") as engine:
        today = datetime.fromtimestamp(clock.now, UTC).date()
        since = (today - timedelta(days=20)).isoformat()
        until = (today - timedelta(days=5)).isoformat()
        run = engine.backfill(since, until)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.params["windows"] == 3
        dates = engine.query(
            "select min(reading_ts)::date, max(reading_ts)::date from raw.glucose_entries", "dev"
        )
        first, last = dates.rows[0]
        assert first.isoformat() == since
        assert last.isoformat() == until


def test_bad_backfill_dates_are_user_errors(home: Path, server: SimulatorServer, monkeypatch) -> None:
    from engine.errors import PhloError

    with make_engine(home, server, monkeypatch) as engine:
        with pytest.raises(PhloError, match="YYYY-MM-DD"):
            engine.backfill("01/02/2026")
        with pytest.raises(PhloError, match="before"):
            engine.backfill("2026-02-01", "2026-01-01")


def test_a_long_backfill_built_in_month_batches_equals_one_build(
    tmp_path: Path, server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of one month (each also rebuilding the month before it) give exactly the tables one
    build of every month gives: the month edges see their neighbours."""
    import engine.pipeline

    since = time.strftime("%Y-%m-%d", time.gmtime(server.simulator.clock() - 75 * 86400))
    tables: dict[str, dict[str, list[Any]]] = {}
    monkeypatch.setenv("PHLO_TIMEZONE", "America/New_York")
    for name, batch in (("one", 1000), ("batched", 1)):
        monkeypatch.setenv("PHLO_HOME", str(tmp_path / name))
        monkeypatch.setattr(engine.pipeline, "BUILD_BATCH_MONTHS", batch)
        with make_engine(tmp_path / name, server, monkeypatch) as eng:
            run = eng.backfill(since)
            assert run.status is RunStatus.SUCCEEDED, run.error
            gates = [s for s in run.steps if s.name == "gates"]
            assert (len(gates) > 2) if batch == 1 else (len(gates) == 1)
            # Whole-table models no incremental model reads are built once, in the last batch.
            overview = [s for s in run.steps if s.name == "model marts.mrt_glucose_overview"]
            assert len(overview) == 1
            tables[name] = {}
            for model in eng.models():
                columns = eng.query(f"select * from {model.name} limit 0", "main").columns
                kept = ", ".join(c for c in columns if not c.startswith("_phlo"))
                rows = eng.query(f"select {kept} from {model.name} order by all", "main").rows
                # Sums in a different order differ in the last bits of a double.
                tables[name][model.name] = [
                    tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows
                ]
    assert tables["batched"].keys() == tables["one"].keys()
    for model_name, rows in tables["one"].items():
        # The mixed uploaders' site serves no profile: its basal models are empty (they are built in
        # batches in tests/test_closed_loop_sim.py's closed-loop weeks).
        assert rows or model_name in ("bronze.stg_basal_schedule", "gold.fct_daily_basal_insulin"), model_name
        assert tables["batched"][model_name] == rows, model_name
