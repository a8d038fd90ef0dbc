"""A full disk, a read-only home and file modes: failures are clear and leave no damage, files are private."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.api.facade import Engine
from engine.clock import NOW_ENV
from engine.config import load_settings
from engine.runs.logs import setup_logging
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.hardening.lakecheck import REPO, assert_lake_sound
from tests.simclock import START

pytestmark = pytest.mark.hardening
SINCE = (START.date() - timedelta(days=60)).isoformat()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def site() -> Iterator[SimulatorServer]:
    with SimulatorServer(GlucoseSimulator(seed=3)) as server:
        yield server


def _env(home: Path, url: str, tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "PHLO_HOME": str(home),
        "PHLO_CONFIG": str(tmp / "no-config.toml"),
        "PHLO_TIMEZONE": "UTC",
        "PHLO_INITIAL_DAYS": "2",
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_MAX_ATTEMPTS": "1",
        "NIGHTSCOUT_URL": url,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: START.isoformat(),
    }


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    point = tmp_path / "small-disk"
    point.mkdir()
    if os.geteuid() != 0 or not mount("-t", "tmpfs", "-o", "size=12m", "tmpfs", str(point)):
        pytest.skip("needs root and permission to mount a tmpfs")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def assert_clear_failure(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "error" in result.stderr, result.stderr


def test_a_full_disk_fails_the_run_clearly_and_damages_nothing(
    tmpfs: Path, site: SimulatorServer, tmp_path: Path
) -> None:
    home = tmpfs / "home"
    env = _env(home, site.url, tmp_path)
    first = cli(env, "run")
    assert first.returncode == 0, first.stderr
    # Fill the disk, leaving less than a backfill needs.
    filler = tmpfs / "filler"
    with filler.open("wb") as fh:
        free = shutil.disk_usage(tmpfs).free
        fh.write(b"\0" * max(free - 200_000, 0))
    full = cli(env, "backfill", "--since", SINCE)
    assert_clear_failure(full)
    assert "No space left" in full.stderr or "space" in full.stderr.lower(), full.stderr
    filler.unlink()
    again = cli(env, "backfill", "--since", SINCE)
    assert again.returncode == 0, again.stderr + again.stdout
    with Engine(load_settings(env, config_path=tmp_path / "no-config.toml")) as engine:
        assert_lake_sound(engine)
        runs = engine.list_runs(3)
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED]


def test_a_read_only_home_refuses_writes_clearly_and_still_answers_status(
    site: SimulatorServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = _env(home, site.url, tmp_path)
    assert cli(env, "run").returncode == 0
    if os.geteuid() != 0 or not mount("--bind", "-o", "ro", str(home), str(home)):
        pytest.skip("needs root and permission to bind-mount read-only")
    try:
        for args in (["run"], ["sql", "select count(*) from raw.glucose_entries"]):
            result = cli(env, *args)
            assert_clear_failure(result)
            assert "read-only" in result.stderr.lower() or "read only" in result.stderr.lower(), result.stderr
        # Reading commands that need no writer answer from a read-only home (tests/test_first_minutes.py).
        answered = cli(env, "status")
        assert answered.returncode == 0, answered.stderr
        assert "succeeded" in answered.stdout
    finally:
        subprocess.run(["umount", str(home)], check=False)
    with Engine(load_settings(env, config_path=tmp_path / "no-config.toml")) as engine:
        assert_lake_sound(engine)
        assert engine.list_runs(1)[0].status is RunStatus.SUCCEEDED


def _modes(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): stat.S_IMODE(p.stat().st_mode) for p in [home, *home.rglob("*")]}


def test_the_home_and_its_files_are_private(site: SimulatorServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home, site.url, tmp_path)
    assert cli(env, "run").returncode == 0
    exposed = {p: oct(m) for p, m in _modes(home).items() if m & 0o077}
    assert not exposed, f"readable by others: {exposed}"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_files_are_private_without_the_cli_umask(site: SimulatorServer, tmp_path: Path) -> None:
    # A library user (or a test) of the engine has its own umask: the run store with its WAL, the
    # writer lock and the logs are still 0600.
    home = tmp_path / "home"
    env = _env(home, site.url, tmp_path)
    old = os.umask(0o022)
    try:
        with Engine(load_settings(env, config_path=tmp_path / "no-config.toml")) as engine:
            setup_logging(engine.settings.logs_dir, stream=open(os.devnull, "w"))  # noqa: SIM115
            logging.getLogger("engine").info("a line")
            engine.become_writer()
            modes = _modes(home)
    finally:
        os.umask(old)
        logging.getLogger().handlers.clear()
    for name in ("runs.sqlite", "runs.sqlite-wal", "runs.sqlite-shm", "writer.lock", "logs/phlo-tui.log"):
        assert modes[name] == 0o600, (name, oct(modes[name]))
    assert modes["."] == 0o700


def test_a_config_file_with_a_secret_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('nightscout_token = "tok-3f9a"\n')
    config.chmod(0o644)
    settings = load_settings({"PHLO_HOME": str(tmp_path / "home")}, config_path=config)
    assert settings.nightscout_token is not None
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("chmod 600" in m and "nightscout_token" in m for m in warned), warned
    assert not any("tok-3f9a" in m for m in warned)
    caplog.clear()
    config.chmod(0o600)
    load_settings({"PHLO_HOME": str(tmp_path / "home")}, config_path=config)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
