"""`phlo-tui import FILE` while a daemon holds the home: the command is queued with the file's absolute
path, so the daemon (whose working directory is another) reads the same file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.sim.export import write_export
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import START, Clock
from tests.test_daemon import start_daemon, status, stop, wait_for


@pytest.fixture
def site() -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=21, clock=Clock(behind_s=2 * 3600))) as srv:
        yield srv


def test_import_queued_to_the_daemon_keeps_the_absolute_path(
    home: Path, tmp_path: Path, site: SimulatorServer
) -> None:
    env = {
        **os.environ,
        "NIGHTSCOUT_URL": site.url,
        "PHLO_INITIAL_DAYS": "1",
        "PHLO_SCHEDULE_INTERVAL_SECONDS": "3600",
        "PHLO_MAX_ATTEMPTS": "1",
    }
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    # Days well before the site's, so that the import's readings are its own.
    export = write_export(
        "clarity", elsewhere / "export.csv", days=2, until=START - timedelta(days=10), tz="UTC"
    )
    daemon = start_daemon(env)
    try:
        wait_for(lambda: status(env)["daemon"] is not None)
        # A path relative to the person's shell, which is not the daemon's working directory.
        queued = subprocess.run(
            [sys.executable, "-m", "phlo_tui.cli", "import", "export.csv", "--json"],
            env=env,
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert queued.returncode == 0, queued.stderr
        assert "queued to the running daemon" in queued.stderr
        run = json.loads(queued.stdout)
        assert run["status"] == "succeeded" and run["trigger"] == "import"
        assert run["summary"]["lines"] == export.lines and run["summary"]["stored"] > 0
    finally:
        assert stop(daemon)[0] == 0
    with sqlite3.connect(home / "runs.sqlite") as con:
        [(args,)] = con.execute("select args from commands where kind = 'import'").fetchall()
    assert json.loads(args)["path"] == str(export.path.resolve())
