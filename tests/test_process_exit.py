"""How a `phlo-tui` command's process ends (phlo_tui.process_exit), through the real command line in a
subprocess: the exit code kept, every exit handler run, the output complete through a pipe and quiet when
the pipe's reader has gone, and nothing left behind: no process of the home (the private PostgreSQL, the
prefetch child), no SQLite write-ahead log, no run or step left running."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine.publish.pgserver import find_server_binaries
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.pgclusters import cluster_of, remove_private_cluster
from tests.simclock import HOUR, Clock

ROWS = 100_000


def _env(**extra: str) -> dict[str, str]:
    # As in a person's shell: stdout through a pipe is block-buffered, so only the final flush writes
    # the last block (the suite's own environment may say PYTHONUNBUFFERED).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, **extra}


def _phlo(*args: str, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    """`phlo-tui ARGS` as the program runs it (phlo_tui.cli.entry), after the Python statements `prelude`."""
    code = f"{prelude}\nimport sys\nsys.argv = ['phlo-tui', *{list(args)!r}]\nfrom phlo_tui.cli import entry\nentry()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def _left_behind(home: Path) -> list[str]:
    """What a finished command must not leave: processes started with this home in their environment
    (the private PostgreSQL, the prefetch child) and SQLite or DuckDB logs of a database left open."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get("PHLO_HOME") == str(home):
                found.append(f"process {proc.info['pid']} {proc.info['name']}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for pattern in ("*-wal", "*-shm", "*.wal"):
        found += [str(p) for p in home.rglob(pattern) if "postgres" not in p.relative_to(home).parts]
    return found


_GC_STATE = (
    "import atexit, gc, json, sys\n"
    "gc.callbacks.append(lambda phase, info: phase == 'stop' and gc.isenabled() and _seen.append(1))\n"
    "_seen = []\n"
    "atexit.register(lambda: print('GC ' + json.dumps({'enabled': gc.isenabled(), "
    "'frozen': gc.get_freeze_count() > 0, 'collected': bool(_seen)}), file=sys.stderr))"
)
"""A prelude that prints the cyclic collector's state at exit: on, with the imports frozen, and having
collected during the command (engine.api.startup.pause_collector and engine_class)."""


def _collector(stderr: str) -> dict[str, bool]:
    (line,) = [line for line in stderr.splitlines() if line.startswith("GC ")]
    state: dict[str, bool] = json.loads(line[3:])
    return state


def _run_store_settled(home: Path) -> tuple[str, list[tuple[str, str]]]:
    con = sqlite3.connect(home / "runs.sqlite")
    try:
        (check,) = con.execute("pragma integrity_check").fetchone()
        running = con.execute(
            "select 'run', id from runs where status = 'running' "
            "union all select 'step', run_id from steps where status = 'running'"
        ).fetchall()
    finally:
        con.close()
    return check, running


@pytest.mark.skipif(find_server_binaries() is None, reason="PostgreSQL server binaries are not installed")
def test_a_finished_run_leaves_no_process_no_log_and_a_settled_run_store(home: Path) -> None:
    clock = Clock(behind_s=HOUR)
    try:
        with SimulatorServer(GlucoseSimulator(seed=7, clock=clock)) as server:
            env = _env(NIGHTSCOUT_URL=server.url, PHLO_INITIAL_DAYS="2", PHLO_MANAGE_POSTGRES="true")
            # The first run reads its initial days; the second takes the prefetch child's windows.
            for _ in range(2):
                done = _phlo(
                    "run", "--json", env={**env, "PHLO_NOW": clock.utc().isoformat()}, prelude=_GC_STATE
                )
                assert done.returncode == 0, done.stderr
                run = json.loads(done.stdout)  # complete through the pipe
                assert run["status"] == "succeeded"
                assert [s["name"] for s in run["steps"]][-1] == "publish"
                assert _left_behind(home) == []
                assert cluster_of(home).running_pid() is None
                assert _run_store_settled(home) == ("ok", [])
                assert _collector(done.stderr) == {"enabled": True, "frozen": True, "collected": True}
                clock.now += HOUR
            status = json.loads(_phlo("status", "--json", env=env).stdout)
            assert status["writer"] is None
            assert [r["status"] for r in status["runs"]] == ["succeeded", "succeeded"]
    finally:
        remove_private_cluster(home)


def test_exit_handlers_run_and_the_exit_code_is_kept(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "atexit"
    prelude = f"import atexit, pathlib\natexit.register(pathlib.Path({str(marker)!r}).write_text, 'ran')"
    answered = _phlo("sql", "select 42 as answer", env=_env(), prelude=prelude)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split() == ["answer", "------", "42"]
    assert marker.read_text() == "ran"
    marker.unlink()
    refused = _phlo("sql", "select * from nowhere", env=_env(), prelude=prelude)
    assert refused.returncode == 1
    assert refused.stderr.startswith("phlo-tui: error: ") and "Traceback" not in refused.stderr
    assert marker.read_text() == "ran"
    assert _left_behind(home) == []


def test_output_through_a_pipe_is_complete(home: Path) -> None:
    done = _phlo("sql", f"select n from range({ROWS}) t(n)", env=_env())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 + ROWS
    assert lines[-1].strip() == str(ROWS - 1)
    rows = json.loads(_phlo("sql", f"select n from range({ROWS}) t(n)", "--json", env=_env()).stdout)
    assert len(rows) == ROWS and rows[-1] == {"n": ROWS - 1}


def test_a_reader_gone_before_the_last_flush_ends_quietly(home: Path) -> None:
    """`phlo-tui sql … | head -0`: the reader leaves before the command writes anything; its output is
    all in the buffer the exit flushes. That flush finds the pipe closed: exit 141, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "sql", "select 42 as answer"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert stderr == ""


def test_a_profiled_command_still_writes_its_profile(home: Path, tmp_path: Path) -> None:
    """`python -m cProfile` writes its report after the program returns: such a process ends as Python
    ends it."""
    report = tmp_path / "profile.out"
    done = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(report), "-m", "phlo_tui.cli", "sql", "select 1 as n"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n", "-", "1"]
    assert report.stat().st_size > 0


def test_the_collector_is_paused_only_for_the_engines_import(home: Path) -> None:
    engine = _phlo("sql", "select 1 as n", env=_env(), prelude=_GC_STATE)
    assert engine.returncode == 0, engine.stderr
    assert _collector(engine.stderr) == {"enabled": True, "frozen": True, "collected": True}
    light = _phlo("status", env=_env(), prelude=_GC_STATE)
    assert light.returncode == 0, light.stderr
    assert _collector(light.stderr)["frozen"] is False
    # A library caller's collector is left alone.
    in_process = subprocess.run(
        [sys.executable, "-c", f"{_GC_STATE}\nfrom phlo_tui.cli import main\nmain(['sql', 'select 1'])"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert _collector(in_process.stderr) == {"enabled": True, "frozen": False, "collected": True}
