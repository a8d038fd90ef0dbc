"""The command line as a user and a script see it: exit codes, JSON shapes, errors without tracebacks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.sim.server import SimulatorServer
from tests.simclock import START


def phlo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_demo_run_status_and_sql(home: Path) -> None:
    run = phlo("--demo", "run", env={"PHLO_INITIAL_DAYS": "2"})
    assert run.returncode == 0, run.stderr
    assert "succeeded" in run.stdout
    assert (home / "demo" / "lake").is_dir()
    status = json.loads(phlo("status", "--json", "--demo").stdout)
    assert status["demo"] is True
    (latest,) = status["runs"]
    assert {"id", "status", "trigger", "started_at", "finished_at", "steps"} <= set(latest)
    assert latest["status"] == "succeeded"
    assert [s["name"] for s in latest["steps"]][:3] == ["fetch", "validate", "merge"]
    # The text form says at a glance who writes, the gate, main and freshness, then the runs.
    text = phlo("status", "--demo").stdout.splitlines()
    summary = dict(line.split(":", 1) for line in text[1 : text.index("")])
    assert set(summary) >= {"writer", "gate", "main", "freshness"}
    assert summary["writer"].strip().startswith("none running")  # the run has exited
    assert summary["gate"].strip().startswith("ok")
    promotion = status["last_promotion"]
    assert summary["main"].strip().startswith(f"promotion {promotion['id']} at ")
    assert (
        summary["freshness"].strip() == f"{status['freshness']['level']}: " + status["freshness"]["message"]
    )
    assert any(latest["id"] in line for line in text)
    rows = json.loads(
        phlo(
            "--demo",
            "sql",
            "select count(*) as n, min(sgv) as lo from raw.glucose_entries",
            "--branch",
            "dev",
            "--json",
        ).stdout
    )
    assert rows[0]["n"] > 2 * 288 * 0.8
    assert oct((home / "demo").stat().st_mode & 0o777) == "0o700"


def test_bad_setting_is_one_line_without_traceback(home: Path) -> None:
    result = phlo("status", env={"PHLO_TIMEZONE": "Mars/Olympus"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "PHLO_TIMEZONE" in result.stderr and "IANA" in result.stderr


def test_run_without_site_explains(home: Path) -> None:
    result = phlo("run")
    assert result.returncode == 2
    assert "NIGHTSCOUT_URL" in result.stderr and "--demo" in result.stderr
    assert "Traceback" not in result.stderr


def test_sql_error_and_missing_import_file_are_user_errors(home: Path, tmp_path: Path) -> None:
    bad = phlo("sql", "selec 1")
    assert bad.returncode == 1 and "SQL error" in bad.stderr and "Traceback" not in bad.stderr
    missing = phlo("--demo", "import", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("<html>oops</html>")
    result = phlo("--demo", "import", str(junk))
    assert result.returncode == 1 and "not a JSON file" in result.stderr


def _merge_running(db: Path) -> bool:
    try:
        con = sqlite3.connect(db, timeout=1)
        row = con.execute("select count(*) from steps where name = 'merge' and status = 'running'").fetchone()
        con.close()
        return bool(row[0])
    except sqlite3.Error:
        return False


@pytest.mark.hardening
def test_kill_9_during_backfill_merge_then_rerun_is_consistent(
    home: Path, sim_server: SimulatorServer
) -> None:
    env = {"NIGHTSCOUT_URL": sim_server.url, "PHLO_BACKFILL_WINDOW_DAYS": "10"}
    since = (START - timedelta(days=90)).date().isoformat()
    for attempt in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "phlo_tui.cli", "backfill", "--since", since],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline and proc.poll() is None and not _merge_running(home / "runs.sqlite")
        ):
            time.sleep(0.01)
        time.sleep(0.05 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = phlo("backfill", "--since", since, "--json", env=env)
    assert result.returncode == 0, result.stderr
    status = json.loads(phlo("status", "--json").stdout)
    assert status["runs"][0]["status"] == "succeeded"
    assert any(r["status"] == "failed" for r in status["runs"][1:])
    dup = json.loads(
        phlo(
            "sql",
            "select count(*) - count(distinct _id) as d, count(*) as n from raw.glucose_entries",
            "--branch",
            "dev",
            "--json",
        ).stdout
    )
    assert dup[0]["d"] == 0
    start = int(datetime.fromisoformat(since).replace(tzinfo=UTC).timestamp() * 1000)
    until = status["runs"][0]["params"]["until_ms"]
    want = {e["_id"] for e in sim_server.simulator.entries(kind="sgv", gte=start, lt=until, count=10**9)}
    quarantined = json.loads(
        phlo("sql", "select count(*) as q from raw.glucose_quarantine", "--branch", "dev", "--json").stdout
    )
    assert dup[0]["n"] + quarantined[0]["q"] == len(want)


METRIC_COLUMNS = {
    "reading_date",
    "day_name",
    "reading_count",
    "avg_glucose_mg_dl",
    "stddev_glucose_mg_dl",
    "min_glucose_mg_dl",
    "max_glucose_mg_dl",
    "time_in_range_pct",
    "time_below_range_pct",
    "time_above_range_pct",
    "time_very_low_pct",
    "time_low_pct",
    "time_high_pct",
    "time_very_high_pct",
    "cv_pct",
    "estimated_a1c_pct",
    "gri",
    "lbgi",
    "hbgi",
    "coverage_pct",
    "sensor_error_count",
    "hypo_episodes_l1",
    "hypo_episodes_l2",
}


def test_metrics_diff_quality_promote_commands(home: Path) -> None:
    env = {"PHLO_INITIAL_DAYS": "3", "PHLO_AUTO_PROMOTE": "false"}
    assert phlo("--demo", "run", env=env).returncode == 0
    on_main = json.loads(phlo("--demo", "metrics", "--json", env=env).stdout)
    assert on_main["days"] == []
    assert on_main["period"]["readings"] == 0 and on_main["period"]["sufficient_data"] is False
    diff = json.loads(phlo("--demo", "diff", "--json", env=env).stdout)
    tables = {t["table"]: t for t in diff["tables"]}
    assert tables["raw.glucose_entries"]["rows_added"] > 3 * 250
    assert tables["gold.fct_daily_glucose_metrics"]["snapshots_ahead"] >= 1
    assert len(tables["gold.fct_daily_glucose_metrics"]["days_touched"]) in (3, 4)
    refused = phlo("--demo", "promote", env=env)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    promoted = phlo("--demo", "promote", "--yes", "--json", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["state"] == "done"
    rows = json.loads(phlo("--demo", "metrics", "--days", "3", "--json", env=env).stdout)["days"]
    assert 1 <= len(rows) <= 3
    assert set(rows[0]) >= METRIC_COLUMNS
    dev_rows = json.loads(
        phlo("--demo", "metrics", "--days", "3", "--branch", "dev", "--json", env=env).stdout
    )["days"]
    assert [{**r, "coverage_pct": 0} for r in dev_rows] == [{**r, "coverage_pct": 0} for r in rows]
    assert phlo("--demo", "promote", "--yes", env=env).stdout.startswith("nothing to promote")
    quality = json.loads(phlo("--demo", "quality", "--json", env=env).stdout)
    assert all(
        {"run_id", "check", "table", "column", "severity", "failing_count"} <= set(c)
        for c in quality["checks"]
    )
    bad = phlo("--demo", "metrics", "--since", "yesterday", env=env)
    assert bad.returncode == 1 and "YYYY-MM-DD" in bad.stderr
