"""kill -9 at every step boundary of a run, then a restart: the lake stays readable, `main` stays as
promoted, nothing is duplicated, and the next run finishes the work and promotes it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from engine.api.facade import Engine
from engine.clock import NOW_ENV
from engine.config import load_settings
from engine.ingest.sources import SOURCES
from engine.ingest.tables import RAW_TABLES
from engine.runs.records import PromotionState, RunStatus, RunTrigger
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from engine.transform.models import discover_models
from tests.hardening.lakecheck import Zygote, assert_lake_sound
from tests.pgserver import PgServer
from tests.simclock import START

pytestmark = pytest.mark.hardening

# Every model the runner discovers in sql/, so a new source's models are killed too.
MODELS = [f"model {m.name}" for m in discover_models(sources=[t.name for t in RAW_TABLES])]
# Each source's own ingest steps: the first source's, then the second's after the first committed.
INGEST = [f"{step}@{source.name}" for source in SOURCES for step in ("fetch", "validate", "merge")]
STEPS = [*INGEST, *MODELS, "gates", "promote", "publish"]
FULL = os.environ.get("PHLO_HARDENING_FULL") == "1"
# CI kills on entering every step, on leaving the steps that commit or move refs, and inside the raw
# table's Iceberg commit, and halfway through moving the refs of a promotion; PHLO_HARDENING_FULL=1 also kills on leaving every step and inside a model's commit.
LEAVE = STEPS if FULL else [*(f"merge@{source.name}" for source in SOURCES), "promote", "publish"]
COMMITS = ["raw/glucose_entries/metadata", *(["silver/fct_glucose_readings/metadata"] if FULL else [])]
CASES = (
    [("enter", s) for s in STEPS]
    + [("leave", s) for s in LEAVE]
    + [("commit", t) for t in COMMITS]
    + [("call", "set_branch:3")]  # promotion record written, main of two tables moved, the rest not
)


@dataclass
class Bench:
    zygote: Zygote
    base_home: Path
    env: dict[str, str]
    backfill: list[str]
    pg: PgServer
    expected: dict[str, int]
    """Rows per table on main after the backfill ran undisturbed."""


def _env(home: Path, url: str, dsn: str, tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "PHLO_HOME": str(home),
        "PHLO_CONFIG": str(tmp / "no-config.toml"),
        "PHLO_TIMEZONE": "UTC",
        "PHLO_INITIAL_DAYS": "3",
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_POSTGRES_DSN": dsn,
        "NIGHTSCOUT_URL": url,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: START.isoformat(),
    }


def _engine(env: dict[str, str]) -> Engine:
    return Engine(load_settings(env, config_path=Path(env["PHLO_CONFIG"])))


def _main_counts(engine: Engine) -> dict[str, int]:
    return {t: c["main"] for t, c in assert_lake_sound(engine).items()}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, pg: PgServer) -> Iterator[Bench]:
    tmp = tmp_path_factory.mktemp("faults")
    zygote = Zygote()
    try:
        with SimulatorServer(GlucoseSimulator(seed=11)) as sim:
            base = tmp / "base"
            env = _env(base, sim.url, pg.create_database("base"), tmp)
            assert zygote.run(["run"], env, tmp / "base.log") == 0, (tmp / "base.log").read_text()
            today = START.date()
            backfill = [
                "backfill",
                "--since",
                (today - timedelta(days=8)).isoformat(),
                "--until",
                (today - timedelta(days=4)).isoformat(),
            ]
            reference = tmp / "reference"
            shutil.copytree(base, reference)
            ref_env = {
                **env,
                "PHLO_HOME": str(reference),
                "PHLO_POSTGRES_DSN": pg.create_database("reference"),
            }
            assert zygote.run(backfill, ref_env, tmp / "ref.log") == 0, (tmp / "ref.log").read_text()
            with _engine(ref_env) as engine:
                expected = _main_counts(engine)
            assert expected["silver.fct_glucose_readings"] > 3 * 288
            yield Bench(zygote, base, env, backfill, pg, expected)
    finally:
        zygote.close()


@pytest.mark.parametrize(("when", "target"), CASES, ids=[f"{w}-{t}" for w, t in CASES])
def test_kill_then_restart(bench: Bench, tmp_path: Path, when: str, target: str) -> None:
    home = tmp_path / "home"
    shutil.copytree(bench.base_home, home)
    database = f"case_{abs(hash((when, target))) % 10**8}"
    dsn = bench.pg.create_database(database)
    env = {**bench.env, "PHLO_HOME": str(home), "PHLO_POSTGRES_DSN": dsn}
    log = tmp_path / "run.log"

    status = bench.zygote.run(bench.backfill, env, log, when, target)
    assert status == -9, f"the run was not killed at {when} {target}: exit {status}\n{log.read_text()}"

    with _engine(env) as engine:
        assert_lake_sound(engine)
        killed = engine.list_runs(1)[0]
        assert killed.trigger is RunTrigger.BACKFILL and killed.status is RunStatus.RUNNING
        if when == "call":
            assert engine.store.promotions(PromotionState.PENDING), "the kill missed the promotion"

    status = bench.zygote.run(bench.backfill, env, log)
    output = log.read_text()
    assert status == 0, output
    assert "Traceback" not in output

    with _engine(env) as engine:
        counts = _main_counts(engine)
        assert counts == bench.expected
        assert all(d.changed is False for d in engine.diff()), "dev is ahead of main after a successful run"
        runs = engine.list_runs(2)
        assert runs[0].status is RunStatus.SUCCEEDED
        assert runs[1].id == killed.id and runs[1].status is RunStatus.FAILED
        assert "stopped before it finished" in (runs[1].error or "")
        assert engine.store.pending_months() == set()
    with psycopg.connect(dsn) as con:
        published = con.execute("select count(*) from api.daily_glucose_metrics").fetchone()
    assert published is not None and published[0] == counts["gold.fct_daily_glucose_metrics"]
