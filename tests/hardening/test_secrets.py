"""Secrets never reach the disk: a planted token, API secret and PostgreSQL password are searched for in
every file under PHLO_HOME after good runs, a backfill and failures on purpose."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from engine.api.facade import Engine
from engine.clock import NOW_ENV
from engine.config import load_settings
from engine.runs.logs import setup_logging
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.hardening.lakecheck import REPO
from tests.pgserver import PgServer, free_port
from tests.simclock import START

pytestmark = pytest.mark.hardening

TOKEN = "tok" + secrets.token_hex(12)
WRONG_TOKEN = "tok" + secrets.token_hex(12)
API_SECRET = "sec" + secrets.token_hex(12)
PG_PASSWORD = "pgpw" + secrets.token_hex(12)
URL_TOKEN = "qtok" + secrets.token_hex(12)
NEEDLES = {
    "token": TOKEN,
    "wrong token": WRONG_TOKEN,
    "api secret": API_SECRET,
    "api secret sha1": hashlib.sha1(API_SECRET.encode()).hexdigest(),
    "postgres password": PG_PASSWORD,
    "token in the url": URL_TOKEN,
}


def _leaks(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            found += [
                f"{name} in {path.relative_to(root)}"
                for name, needle in NEEDLES.items()
                if needle.encode() in data
            ]
    return found


def test_no_secret_reaches_the_home(pg: PgServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    dsn = pg.create_database("secrets")
    with_password = make_conninfo(dsn, password=PG_PASSWORD)
    down_dsn = make_conninfo(dsn, port=str(free_port()), password=PG_PASSWORD)
    since = (START.date() - timedelta(days=20)).isoformat()
    base = {
        "PHLO_HOME": str(home),
        "PHLO_TIMEZONE": "UTC",
        "PHLO_INITIAL_DAYS": "2",
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_MAX_ATTEMPTS": "2",
        "PHLO_POSTGRES_DSN": with_password,
        NOW_ENV: START.isoformat(),
    }
    transcript: list[str] = []
    with (
        SimulatorServer(GlucoseSimulator(seed=9), token=TOKEN) as by_token,
        SimulatorServer(GlucoseSimulator(seed=9), api_secret=API_SECRET) as by_secret,
    ):
        scenarios: list[tuple[dict[str, str], str, RunStatus]] = [
            ({"NIGHTSCOUT_URL": by_token.url, "NIGHTSCOUT_TOKEN": TOKEN}, "run", RunStatus.SUCCEEDED),
            ({"NIGHTSCOUT_URL": by_token.url, "NIGHTSCOUT_TOKEN": TOKEN}, "backfill", RunStatus.SUCCEEDED),
            (
                {"NIGHTSCOUT_URL": by_secret.url, "NIGHTSCOUT_API_SECRET": API_SECRET},
                "run",
                RunStatus.SUCCEEDED,
            ),
            ({"NIGHTSCOUT_URL": f"{by_token.url}/?token={URL_TOKEN}"}, "run", RunStatus.FAILED),  # 401
            (
                {"NIGHTSCOUT_URL": by_token.url, "NIGHTSCOUT_TOKEN": WRONG_TOKEN},
                "run",
                RunStatus.FAILED,
            ),  # 401
            (
                {"NIGHTSCOUT_URL": by_secret.url, "NIGHTSCOUT_API_SECRET": WRONG_TOKEN},
                "run",
                RunStatus.FAILED,
            ),
            (
                {
                    "NIGHTSCOUT_URL": f"http://127.0.0.1:{free_port()}/?token={URL_TOKEN}",
                    "NIGHTSCOUT_TOKEN": TOKEN,
                },
                "run",
                RunStatus.FAILED,
            ),
            (
                {"NIGHTSCOUT_URL": by_token.url, "NIGHTSCOUT_TOKEN": TOKEN, "500": "1"},
                "run",
                RunStatus.FAILED,
            ),
            (
                {"NIGHTSCOUT_URL": by_token.url, "NIGHTSCOUT_TOKEN": TOKEN, "PHLO_POSTGRES_DSN": down_dsn},
                "backfill",
                RunStatus.FAILED,
            ),
        ]
        for extra, kind, expected in scenarios:
            env = {**base, **extra}
            if env.pop("500", None):
                by_token.inject("http_500", times=10)
            settings = load_settings(env, config_path=tmp_path / "no-config.toml")
            with Engine(settings) as engine:
                setup_logging(settings.logs_dir, level=logging.DEBUG, stream=open(os.devnull, "w"))  # noqa: SIM115
                try:
                    run = engine.run_now() if kind == "run" else engine.backfill(since)
                finally:
                    logging.getLogger().handlers.clear()
                by_token.clear_faults()
                transcript.append(f"{run.error} {run.hint}")
                if expected is RunStatus.SUCCEEDED:
                    assert run.status is RunStatus.SUCCEEDED, run.error
                elif "PHLO_POSTGRES_DSN" in extra:
                    # A database that is down fails the publish step; the promotion stands.
                    assert run.status is RunStatus.FAILED and "publish" in (run.error or ""), run.error
                else:
                    assert run.status is RunStatus.FAILED, run.error
        # The command line, verbose, on a failing site: what it prints must not hold a secret either.
        cli = subprocess.run(
            [sys.executable, "-m", "phlo_tui.cli", "-v", "run"],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(tmp_path),
                "PHLO_CONFIG": str(tmp_path / "no-config.toml"),
                "RUNTIME__DLTHUB_TELEMETRY": "false",
                **base,
                "NIGHTSCOUT_URL": f"{by_token.url}/?token={URL_TOKEN}",
                "NIGHTSCOUT_API_SECRET": API_SECRET,
            },
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        transcript += [cli.stdout, cli.stderr]
    assert cli.returncode == 1, cli.stderr
    assert (home / "logs" / "phlo-tui.log").stat().st_size > 0
    assert _leaks(home) == []
    printed = "\n".join(transcript)
    assert [name for name, needle in NEEDLES.items() if needle in printed] == []
