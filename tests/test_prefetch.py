"""The prefetch of a fresh `phlo-tui run` (engine.ingest.prefetch): a forked child reads the site while the
process imports the engine; the run takes its records only when it plans the very same windows."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.ingest import prefetch
from engine.ingest.sources import SOURCES
from engine.runs.records import ENTRIES_WATERMARK
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.simclock import HOUR, START, Clock


def _phlo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def _fetch_steps(home: Path) -> list[dict[str, object]]:
    with sqlite3.connect(home / "runs.sqlite") as con:
        (run_id,) = con.execute("select id from runs order by started_at desc limit 1").fetchone()
        return [
            {"rows": rows, **json.loads(detail)}
            for rows, detail in con.execute(
                "select rows, detail from steps where run_id = ? and name = 'fetch' order by seq", (run_id,)
            )
        ]


def _watermarks(home: Path) -> dict[str, int]:
    with sqlite3.connect(home / "runs.sqlite") as con:
        return dict(con.execute("select source, value from watermarks").fetchall())


def test_a_fresh_run_takes_the_prefetched_windows_and_moves_the_watermarks(home: Path) -> None:
    clock = Clock(behind_s=HOUR)
    with SimulatorServer(GlucoseSimulator(seed=7, clock=clock)) as server:
        env = {"NIGHTSCOUT_URL": server.url, "PHLO_INITIAL_DAYS": "2", "PHLO_MANAGE_POSTGRES": "false"}
        first = _phlo("run", env={**env, "PHLO_NOW": clock.utc().isoformat()})
        assert first.returncode == 0, first.stderr
        # A first run has no watermark to plan from: it reads its initial days itself.
        assert not any(step.get("prefetched") for step in _fetch_steps(home))
        before = _watermarks(home)
        clock.now += HOUR
        second = _phlo("run", env={**env, "PHLO_NOW": clock.utc().isoformat()})
        assert second.returncode == 0, second.stderr
    steps = _fetch_steps(home)
    windowed = [s for s in steps if "window" in s]
    assert windowed and all(s.get("prefetched") is True for s in windowed)
    entries = next(s for s in windowed if s["source"] == "entries")
    assert isinstance(entries["rows"], int) and entries["rows"] > 0
    after = _watermarks(home)
    assert after[ENTRIES_WATERMARK] > before[ENTRIES_WATERMARK]


def test_a_prefetch_planned_from_other_watermarks_or_for_another_home_is_not_taken(
    home: Path, tmp_path: Path
) -> None:
    clock = Clock()
    with SimulatorServer(GlucoseSimulator(seed=7, clock=clock)) as server:
        env = {
            "PHLO_HOME": str(home),
            "NIGHTSCOUT_URL": server.url,
            "PHLO_INITIAL_DAYS": "1",
            "PHLO_MANAGE_POSTGRES": "false",
        }
        assert _phlo("run", env=env).returncode == 0
        settings = load_settings(env, config_path=home / "no-config.toml")
        stored = _watermarks(home)
        marks: dict[str, int | None] = {s.watermark_key: stored.get(s.watermark_key) for s in SOURCES}
        now = START

        prefetch.start(settings, now)
        taken = prefetch.claim(settings.home, marks, now)
        assert taken is not None and any(isinstance(r, list) and r for r in taken.results.values())

        prefetch.start(settings, now)
        moved = {**marks, ENTRIES_WATERMARK: int(marks[ENTRIES_WATERMARK] or 0) + 1}
        assert prefetch.claim(settings.home, moved, now) is None

        prefetch.start(settings, now)
        assert prefetch.claim(tmp_path / "another-home", marks, now) is None

        prefetch.start(settings, now)
        assert prefetch.claim(settings.home, marks, now + timedelta(seconds=prefetch.MAX_AGE_S + 1)) is None


def test_the_prefetched_error_is_the_fetch_error(home: Path) -> None:
    # Nothing listens on port 9 of loopback: the child's fetch fails, and the run says so once.
    env = {"NIGHTSCOUT_URL": "http://127.0.0.1:9", "PHLO_INITIAL_DAYS": "1", "PHLO_MANAGE_POSTGRES": "false"}
    with sqlite3.connect(_seeded(home)) as con:
        con.execute(
            "insert into watermarks (source, value, run_id, updated_at) values (?, ?, 'x', ?)",
            (
                ENTRIES_WATERMARK,
                int((START - timedelta(hours=1)).timestamp() * 1000),
                datetime.now().isoformat(),
            ),
        )
    done = _phlo("run", env=env)
    assert done.returncode != 0
    assert done.stderr.count("127.0.0.1:9") >= 1
    (step,) = [s for s in _fetch_steps(home) if s["source"] == "entries"]
    assert step.get("prefetched") is True


def _seeded(home: Path) -> Path:
    """A home whose run store exists (a run that failed to reach any site makes it)."""
    done = _phlo("run", env={"NIGHTSCOUT_URL": "http://127.0.0.1:9", "PHLO_MANAGE_POSTGRES": "false"})
    if done.returncode == 0:
        pytest.fail("a run against a closed port succeeded")
    return home / "runs.sqlite"


HEAVY = ("pandas", "pandera", "pyiceberg", "pyarrow", "numpy", "duckdb", "sqlalchemy", "psycopg")
"""The engine's libraries the child has no use for (dlt brings sqlglot along: it is not in the list)."""


def test_the_child_reads_the_windows_without_the_engines_heavy_libraries(home: Path) -> None:
    """The child races the parent's import of the engine: what it imports is on the run's path when the
    parent has to wait for its records. It reads the site with requests and dlt only."""
    clock = Clock()
    with SimulatorServer(GlucoseSimulator(seed=7, clock=clock)) as server:
        code = (
            "import json, sys\n"
            "from engine.clock import clock_from_env\n"
            "from engine.config import load_settings\n"
            "from engine.ingest import prefetch\n"
            "now = clock_from_env()()\n"
            f"marks = {{{ENTRIES_WATERMARK!r}: int(now.timestamp() * 1000) - 3_600_000}}\n"
            "read = prefetch._read_windows(load_settings(), now, marks)\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "print(json.dumps([{k[0]: len(v) for k, v in read.results.items() if isinstance(v, list)}, heavy]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NIGHTSCOUT_URL": server.url, "PHLO_INITIAL_DAYS": "1"},
        )
    assert done.returncode == 0, done.stderr
    counts, heavy = json.loads(done.stdout.splitlines()[-1])
    assert counts["entries"] > 0 and "treatments" in counts and "profiles" in counts
    assert heavy == []


def test_the_endpoints_the_child_reads_are_the_declared_sources() -> None:
    from engine.ingest.endpoints import ENDPOINTS

    assert [(s.name, s.path, s.time_field, s.watermark_key) for s in SOURCES] == [
        (e.name, e.path, e.time_field, e.watermark_key) for e in ENDPOINTS
    ]
