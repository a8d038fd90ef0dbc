"""The product's clock (engine/clock.py): one data time for a process and its subprocesses, process
time kept apart, at an instant a month away from the suite's and far from the wall clock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.api.facade import Engine
from engine.clock import NOW_ENV, StartedClock, clock_from_env
from engine.config import load_settings
from engine.errors import ConfigError
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import START, Clock, follow
from tests.test_cli import phlo

DAY = timedelta(days=1)
# A month before the suite's instant: never within a day of the wall clock, whatever the switch says.
ELSEWHERE = START - 30 * DAY


def test_a_started_clock_reads_its_instant_then_runs_on() -> None:
    clock = StartedClock(ELSEWHERE)
    first = clock()
    assert timedelta(0) <= first - ELSEWHERE < timedelta(seconds=5)
    time.sleep(0.05)
    assert clock() - first >= timedelta(seconds=0.04)
    assert clock_from_env({NOW_ENV: ELSEWHERE.isoformat()})() - ELSEWHERE < timedelta(seconds=5)
    # Unset: the wall clock.
    assert abs(clock_from_env({})() - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize("text", ["2027-03-28T00:05:00", "tomorrow"])
def test_a_bad_phlo_now_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="PHLO_NOW"):
        load_settings({NOW_ENV: text})
    done = phlo("status", env={NOW_ENV: text})
    assert done.returncode != 0 and "PHLO_NOW" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_demo_run_in_a_subprocess_lives_at_phlo_now(home: Path) -> None:
    """The CLI's engine and its built-in simulator both read PHLO_NOW: the run fetches the readings up to
    that instant and finds them fresh, though the wall clock is a month or more away."""
    env = {NOW_ENV: ELSEWHERE.isoformat(), "PHLO_INITIAL_DAYS": "1"}
    run = phlo("--demo", "run", env=env)
    assert run.returncode == 0, run.stderr
    status = json.loads(phlo("status", "--json", "--demo", env=env).stdout)
    newest = datetime.fromtimestamp(status["watermark_ms"] / 1000, UTC)
    # The simulator serves nothing after its 'now'; a signal loss or a sensor warm-up ends it up to 2 h early.
    assert ELSEWHERE - timedelta(hours=2, minutes=10) < newest <= ELSEWHERE + timedelta(minutes=5)
    assert status["freshness"]["level"] != "error"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=11, clock=clock)) as srv:
        yield srv


def test_snapshot_expiry_keeps_to_process_time(
    home: Path, server: SimulatorServer, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data time three days on is not three days of lake history: expiry and maintenance, which compare
    with the snapshots' wall-clock stamps, wait for the wall clock (every 6 h, snapshots kept 24 h)."""
    monkeypatch.setenv("NIGHTSCOUT_URL", server.url)
    monkeypatch.setenv("PHLO_INITIAL_DAYS", "2")
    with Engine(load_settings(), clock=follow(server.simulator)) as engine:
        first = engine.run_now()
        assert first.status is RunStatus.SUCCEEDED, first.error
        snapshots = len(engine.lake.snapshots("raw.glucose_entries"))
        clock.now += 3 * DAY.total_seconds()
        later = engine.run_now()
        assert later.status is RunStatus.SUCCEEDED, later.error
        assert later.summary["stored"] > 0  # three days of data time did pass for the data
        steps = {step.name for step in later.steps}
        assert not steps & {"expire history", "maintenance"}, steps
        assert len(engine.lake.snapshots("raw.glucose_entries")) > snapshots
