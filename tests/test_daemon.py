"""The daemon as a person runs it: a real subprocess on the simulator, signals, the lease and attach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import Clock

DAY = 86400.0


@pytest.fixture
def clock() -> Clock:
    """The site two hours behind the daemon's data time ($PHLO_NOW, tests/conftest.py)."""
    return Clock(behind_s=2 * 3600)


@pytest.fixture
def server(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=21, clock=clock)) as srv:
        yield srv


@pytest.fixture
def env(home: Path, server: SimulatorServer) -> dict[str, str]:
    return {
        **os.environ,
        "NIGHTSCOUT_URL": server.url,
        "PHLO_INITIAL_DAYS": "1",
        "PHLO_SCHEDULE_INTERVAL_SECONDS": "3",
        "PHLO_MAX_ATTEMPTS": "1",
        "PHLO_RETRY_DELAY_S": "2",
    }


def start_daemon(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "--daemon"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def phlo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def status(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(phlo(env, "status", "--json").stdout))


def wait_for(predicate: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


def stop(proc: subprocess.Popen[str]) -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    return code, time.monotonic() - started


def no_duplicates(env: dict[str, str]) -> None:
    for branch in ("dev", "main"):
        rows = json.loads(
            phlo(
                env,
                "sql",
                "select count(*) - count(distinct _id) as d from raw.glucose_entries",
                "--branch",
                branch,
                "--json",
            ).stdout
        )
        assert rows[0]["d"] == 0


def test_schedule_attach_second_daemon_and_sigterm(env: dict[str, str], home: Path) -> None:
    daemon = start_daemon(env)
    try:
        wait_for(
            lambda: (
                sum(r["trigger"] == "schedule" and r["status"] == "succeeded" for r in status(env)["runs"])
                >= 2
            )
        )
        info = status(env)["daemon"]
        assert info["pid"] == daemon.pid
        assert info["since"] and info["heartbeat_at"] and info["next_run_at"]

        second = start_daemon(env)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0
        assert f"pid {daemon.pid}" in err and "Traceback" not in err

        attached = phlo(env, "run", "--json")
        assert attached.returncode == 0, attached.stderr
        assert "queued to the running daemon" in attached.stderr
        run = json.loads(attached.stdout)
        assert run["status"] == "succeeded" and run["trigger"] == "manual"
        assert phlo(env, "promote", "--yes").returncode == 0
    finally:
        code, seconds = stop(daemon)
    assert code == 0 and seconds < 15
    log = (home / "logs" / "phlo-tui.log").read_text()
    assert "daemon started" in log and "run=2" in log
    assert status(env)["daemon"] is None
    no_duplicates(env)


def test_catch_up_after_downtime_is_one_run(env: dict[str, str], clock: Clock) -> None:
    env = {**env, "PHLO_SCHEDULE_INTERVAL_SECONDS": "0", "PHLO_INITIAL_DAYS": "5"}
    clock.now -= 3 * DAY
    daemon = start_daemon(env)
    try:
        # Three days without readings: the gate holds the run on freshness.
        wait_for(lambda: any(r["status"] == "held" for r in status(env)["runs"]))
    finally:
        assert stop(daemon)[0] == 0
    clock.now += 3 * DAY  # the site kept uploading while the daemon was down
    daemon = start_daemon(env)
    try:
        wait_for(lambda: len(status(env)["runs"]) >= 2 and status(env)["runs"][0]["status"] == "succeeded")
        runs = status(env)["runs"]
        assert len(runs) == 2
        assert runs[0]["summary"]["fetched"] > 3 * 288 * 0.85
    finally:
        stop(daemon)


def test_kill_9_then_takeover(env: dict[str, str]) -> None:
    daemon = start_daemon(env)
    wait_for(lambda: any(s["name"] == "merge" for r in status(env)["runs"] for s in r["steps"]))
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    successor = start_daemon(env)
    try:
        wait_for(lambda: (status(env)["daemon"] or {}).get("pid") == successor.pid)
        wait_for(lambda: status(env)["runs"][0]["status"] == "succeeded")
    finally:
        stop(successor)
    no_duplicates(env)


def test_transient_failure_shows_retrying(env: dict[str, str], server: SimulatorServer) -> None:
    server.inject("http_503", times=1000)
    daemon = start_daemon({**env, "PHLO_SCHEDULE_INTERVAL_SECONDS": "0", "PHLO_RETRY_DELAY_S": "30"})
    try:
        wait_for(lambda: any(r["status"] == "retrying" for r in status(env)["runs"]))
        retrying = next(r for r in status(env)["runs"] if r["status"] == "retrying")
        assert retrying["summary"]["next_attempt_at"] and retrying["summary"]["attempt"] == 1
        assert "503" in retrying["error"]
        assert status(env)["daemon"]["next_run_at"] == retrying["summary"]["next_attempt_at"]
    finally:
        server.clear_faults()
        stop(daemon)


def test_sigterm_during_merge_stops_cleanly_and_next_run_finishes(env: dict[str, str], home: Path) -> None:
    import sqlite3

    def merging() -> bool:
        try:
            with sqlite3.connect(home / "runs.sqlite", timeout=1) as con:
                row = con.execute(
                    "select count(*) from steps where name = 'merge' and status = 'running'"
                ).fetchone()
            return bool(row[0])
        except sqlite3.Error:
            return False

    env = {
        **env,
        "PHLO_INITIAL_DAYS": "120",
        "PHLO_BACKFILL_WINDOW_DAYS": "5",
        "PHLO_SCHEDULE_INTERVAL_SECONDS": "0",
    }
    daemon = start_daemon(env)
    wait_for(merging, timeout=120)
    code, seconds = stop(daemon)
    assert code == 0 and seconds < 15
    first = status(env)["runs"][0]
    assert first["status"] == "failed" and "stopped on request" in first["error"]
    no_duplicates(env)
    successor = start_daemon(env)
    try:
        wait_for(lambda: status(env)["runs"][0]["status"] in ("succeeded", "held"), timeout=180)
    finally:
        stop(successor)
    no_duplicates(env)
    days = json.loads(
        phlo(
            env,
            "sql",
            "select count(distinct reading_ts::date) as d from raw.glucose_entries",
            "--branch",
            "dev",
            "--json",
        ).stdout
    )
    assert days[0]["d"] >= 120


def test_a_daemon_whose_lease_is_taken_over_stops_writing(env: dict[str, str], home: Path) -> None:
    """Another host's process takes the lease (a home on a shared disk): the daemon sees it at its next
    heartbeat, starts no run after that, exits 1 and leaves the new holder's lease in place.

    Mutation: the daemon loop no longer checks lease_lost (or the heartbeat ignores a lost lease) ->
    the daemon keeps running its 3-second schedule, fails.
    """
    from datetime import timedelta

    from engine.runs.database import utcnow
    from engine.runs.lease import HEARTBEAT_EVERY_S
    from engine.runs.store import RunStore

    daemon = start_daemon(env)
    try:
        wait_for(lambda: any(r["status"] == "succeeded" for r in status(env)["runs"]))
        store = RunStore(home / "runs.sqlite")
        taken_at = utcnow()
        store.take_lease("cli", os.getpid(), "another-host", stale_after=timedelta(0), holder_alive=False)
        code = daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            stop(daemon)
    assert code == 1
    lease = store.lease()
    assert lease is not None and (lease.pid, lease.host) == (os.getpid(), "another-host")
    noticed_by = taken_at + timedelta(seconds=HEARTBEAT_EVERY_S + 2)
    runs = store.list_runs()
    assert [r.id for r in runs if r.started_at > noticed_by] == []
    assert all(r.finished_at is not None for r in runs)
    store.close()
    log = (home / "logs" / "phlo-tui.log").read_text()
    assert "another process took the writer lease over; stopping" in log
