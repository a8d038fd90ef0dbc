"""The first minutes of a new user, through the real command line in a subprocess: every mistake is
one clear line, answered before the engine is imported; no traceback; nothing accepted that should not be."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.signals import sigint_default
from tests.test_cli import phlo

HEAVY = ("pyiceberg", "pandas", "dlt", "pandera", "pyarrow", "sqlglot", "psycopg", "duckdb", "numpy")


def phlo_in_process(*args: str) -> tuple[int, str, list[str]]:
    """Exit code, stderr and the heavy libraries imported by `phlo-tui ARGS` in a fresh interpreter."""
    code = (
        "import sys;from phlo_tui.cli import main;"
        f"rc = main({list(args)!r});"
        f"heavy = {HEAVY!r};"
        "print(json.dumps([rc, sorted({m.split('.')[0] for m in sys.modules} & set(heavy))]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json;" + code],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    rc, heavy = json.loads(result.stdout.splitlines()[-1])
    return rc, result.stderr, heavy


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("metrics", "--since", "2026-13-45"), "bad date '2026-13-45'"),
        (("metrics", "--days", "0"), "--days 0: a period has at least one day"),
        (("metrics", "--days", "-3"), "--days -3"),
        (
            ("metrics", "--since", "2026-05-02", "--until", "2026-05-01"),
            "--since 2026-05-02 is after --until",
        ),
        (("backfill", "--since", "2999-01-01"), "--since 2999-01-01 is after today"),
        (("backfill", "--since", "2026-05-02", "--until", "2026-05-01"), "--until 2026-05-01 is before"),
        (("sql", "  "), "the query is empty"),
        (("import", "/nonexistent/entries.json"), "no such file"),
    ],
)
def test_a_bad_argument_is_one_line_before_any_heavy_import(
    home: Path, args: tuple[str, ...], said: str
) -> None:
    rc, stderr, heavy = phlo_in_process(*args)
    assert rc == 1, stderr
    assert said in stderr
    assert "Traceback" not in stderr
    assert heavy == []
    assert not (home / "lake").exists()  # nothing was created for a refused command


def test_import_of_a_directory_or_an_empty_file_says_what_it_is(home: Path, tmp_path: Path) -> None:
    rc, stderr, heavy = phlo_in_process("import", str(tmp_path))
    assert rc == 1 and "is a directory, not an export file" in stderr and heavy == []
    assert "permissions" not in stderr
    empty = tmp_path / "entries.json"
    empty.write_bytes(b"")
    rc, stderr, heavy = phlo_in_process("import", str(empty))
    assert rc == 1 and "the file is empty" in stderr and heavy == []
    assert "Expecting value" not in stderr


def test_engine_refuses_the_same_mistakes(home: Path, tmp_path: Path) -> None:
    """The engine's own entry points make the same checks (the TUI and the daemon call them)."""
    from engine.api.facade import Engine
    from engine.config import load_settings
    from engine.errors import PhloError

    with Engine(load_settings(demo=True)) as engine:
        with pytest.raises(PhloError, match="is a directory"):
            engine.import_file(tmp_path)
        with pytest.raises(PhloError, match="is after today"):
            engine.backfill("2999-01-01")
        with pytest.raises(PhloError, match="at least one day"):
            engine.metrics(days=0)


def test_simulate_on_a_bad_or_busy_port(home: Path) -> None:
    out_of_range = phlo("simulate", "--port", "99999")
    assert out_of_range.returncode == 2
    assert "'99999' is not a port" in out_of_range.stderr and "Traceback" not in out_of_range.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = phlo("simulate", "--port", str(port), timeout=60)
    assert taken.returncode == 1
    assert f"cannot serve the simulator on 127.0.0.1:{port}" in taken.stderr
    assert "Traceback" not in taken.stderr


def test_verbose_after_the_command_and_version(home: Path) -> None:
    version = phlo("--version")
    assert version.returncode == 0 and version.stdout.startswith("phlo-tui ")
    verbose = phlo("status", "-v")
    assert verbose.returncode == 0
    assert " INFO " in verbose.stderr


def test_units_in_any_case(home: Path) -> None:
    status = phlo("status", "--json", env={"PHLO_UNITS": "mmol/l", "PHLO_THEME": "Light"})
    assert status.returncode == 0, status.stderr
    settings = json.loads(status.stdout)["settings"]
    assert (settings["units"], settings["theme"]) == ("mmol/L", "light")
    assert phlo("status", env={"PHLO_UNITS": "mg"}).returncode == 2


def test_empty_demo_home_hints_say_demo(home: Path) -> None:
    metrics = phlo("--demo", "metrics")
    assert metrics.returncode == 1 and "`phlo-tui --demo run`" in metrics.stderr
    sql = phlo("--demo", "sql", "select count(*) from raw.glucose_entries")
    assert sql.returncode == 1
    assert "has no tables yet" in sql.stderr and "`phlo-tui --demo run`" in sql.stderr
    assert "schema" not in sql.stderr
    assert phlo("--demo", "sql", "select 42 as n").stdout.splitlines()[-1].strip() == "42"
    writer = phlo("--demo", "status").stdout.splitlines()[1]
    assert "`phlo-tui --demo run`" in writer


def test_a_closed_pipe_ends_quietly(home: Path) -> None:
    """`phlo-tui … | head -1`: the reader goes away; no BrokenPipeError traceback (every command prints
    through the same exit path)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "sql", "select * from range(200000)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def _step_running(db: Path) -> bool:
    try:
        con = sqlite3.connect(db, timeout=1)
        row = con.execute("select count(*) from steps where status = 'running'").fetchone()
        con.close()
        return bool(row[0])
    except sqlite3.Error:
        return False


def test_ctrl_c_during_a_run_leaves_it_failed_not_running(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "--demo", "run"],
        env={**os.environ, "PHLO_INITIAL_DAYS": "30"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not _step_running(home / "demo" / "runs.sqlite")
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    status = json.loads(phlo("--demo", "status", "--json").stdout)
    (run,) = status["runs"]
    assert run["status"] == "failed"
    assert "stopped on request" in run["error"]
    assert status["writer"] is None


def _read_only(home: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`phlo-tui ARGV` on `home` made read-only: a read-only bind mount as root (root writes through
    file modes), the directory's modes otherwise."""
    command = [sys.executable, "-m", "phlo_tui.cli", *argv]
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(home)], check=True)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=300)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(home)], check=True)
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount the home read-only as root")
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(home), *command],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_read_only_home_answers_status_and_metrics(home: Path) -> None:
    assert phlo("--demo", "run", env={"PHLO_INITIAL_DAYS": "1"}).returncode == 0
    demo = home / "demo"
    status = _read_only(demo, ["--demo", "status", "--json"])
    if "Permission denied" in status.stderr and "mount" in status.stderr:
        pytest.skip("this machine does not allow a private mount")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["runs"][0]["status"] == "succeeded"
    metrics = _read_only(demo, ["--demo", "metrics", "--json", "--days", "3"])
    assert metrics.returncode == 0, metrics.stderr
    assert json.loads(metrics.stdout)["days"]


def test_the_demo_script_says_what_it_does_and_where_the_data_went(home: Path) -> None:
    """The first line comes before `uv sync` (which is silent for long seconds the first time); the
    last lines before the metrics say where the demo's data lives and how to remove it."""
    script = Path(__file__).parent.parent / "scripts" / "demo"
    result = subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PHLO_INITIAL_DAYS": "1"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("phlo-tui demo: installing")
    assert lines[1].startswith("phlo-tui demo: fetching")
    where = next(line for line in lines if "its data lives in" in line)
    assert where.endswith(f"rm -rf {home / 'demo'}")
    assert lines.index(where) < lines.index(next(line for line in lines if line.startswith("reading_date")))


def test_a_refused_connection_is_reported_once_with_the_url_and_the_attempts(home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = phlo("run", env={"NIGHTSCOUT_URL": url + "/?token=s3cret"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr + result.stdout
    assert result.stderr.count("connection refused") == 1, result.stderr
    assert f"could not connect to {url}/api/v1/entries/sgv.json" in result.stderr
    assert "after 1 attempt" in result.stderr
