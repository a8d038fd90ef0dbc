"""The lake's Iceberg catalog kept in a real PostgreSQL (catalog_uri): runs, promotion, maintenance, the
light reader, backup and restore, and the mistakes a person makes with the URI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.api.fastread import FastReader
from engine.clock import NOW_ENV
from engine.config import load_settings
from engine.lake.catalog_uri import CATALOG_NAME, redacted
from engine.lake.maintenance import run_maintenance
from engine.lake.opening import MOVED_CATALOG
from engine.lake.store import Lake
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from tests.pgserver import PgServer
from tests.simclock import HOUR, START, Clock

pytestmark = pytest.mark.timeout(1200)

TABLES = (
    "raw.glucose_entries",
    "silver.fct_glucose_readings",
    "gold.fct_daily_glucose_metrics",
    "marts.mrt_glucose_overview",
)
COUNTS = " union all ".join(f"select '{t}' as t, count(*) as n from {t}" for t in TABLES)


def phlo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> str:
    assert result.returncode in (1, 2), (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("phlo-tui: error: ") and text in lines[0], result.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def failed_run(result: subprocess.CompletedProcess[str], text: str) -> str:
    """A run that failed: its record's one error line (`  error: …`) and hint, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr
    return result.stdout + result.stderr


def counts(env: dict[str, str], branch: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(phlo(env, "sql", COUNTS, "--branch", branch, "--json")))
    return rows


def catalog_rows(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as con:
        return [
            (str(n), str(t), str(m))
            for n, t, m in con.execute(
                "select table_namespace, table_name, metadata_location from iceberg_tables "
                "where catalog_name = %s order by 1, 2",
                (CATALOG_NAME,),
            )
        ]


@dataclass
class Site:
    root: Path
    pg: PgServer
    url: str
    clock: Clock

    def env(self, home: Path, catalog: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "NIGHTSCOUT_"))}
        env.update(
            PHLO_HOME=str(home),
            NIGHTSCOUT_URL=self.url,
            PHLO_CONFIG=str(self.root / "no-config.toml"),
            PHLO_MANAGE_POSTGRES="false",
            PHLO_TIMEZONE="UTC",
            PHLO_INITIAL_DAYS="1",
            PHLO_REREAD_HOURS="0",
            RUNTIME__DLTHUB_TELEMETRY="false",
            **{NOW_ENV: START.isoformat()},
            **extra,
        )
        if catalog is not None:
            env["PHLO_CATALOG_URI"] = catalog
        return env

    def database(self, name: str) -> str:
        """A fresh, empty database; its postgresql:// URI (a password the server ignores: trust)."""
        with psycopg.connect(self.pg.dsn(), autocommit=True) as con:
            con.execute(f'drop database if exists "{name}" with (force)')
            con.execute(f'create database "{name}"')
        return f"postgresql://postgres:s3cret-pw@127.0.0.1:{self.pg.port}/{name}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pg: PgServer) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("catalog-pg")
    clock = Clock()
    clock.now -= 6 * HOUR  # behind the engine's data time: room for a second run
    with SimulatorServer(GlucoseSimulator(seed=5, clock=clock)) as server:
        yield Site(root, pg, server.url, clock)


def test_a_home_with_its_catalog_in_postgresql_runs_promotes_maintains_and_backs_up(site: Site) -> None:
    catalog = site.database("lake_catalog")
    home = site.root / "home"
    env = site.env(home, catalog)
    ok(phlo(env, "run"))

    # The catalog's rows are in PostgreSQL, in the JDBC catalog's table, under our catalog name and
    # this home's warehouse; there is no catalog file in the home.
    rows = catalog_rows(catalog)
    assert {f"{n}.{t}" for n, t, _ in rows} >= set(TABLES)
    assert all(m.startswith(f"file://{home.absolute()}/lake/warehouse/") for _, _, m in rows)
    assert not (home / "lake" / "catalog.sqlite").exists()
    promoted = counts(env, "main")
    assert all(r["n"] > 0 for r in promoted), promoted
    assert counts(env, "dev") == promoted

    # A second run that does not promote: dev moves ahead, main stays; then `promote` moves main.
    site.clock.now += 3 * HOUR
    ok(phlo({**env, "PHLO_AUTO_PROMOTE": "false"}, "run"))
    ahead = counts(env, "dev")
    assert counts(env, "main") == promoted
    assert ahead[0]["n"] > promoted[0]["n"]
    diff = json.loads(ok(phlo(env, "diff", "--json")))
    assert diff, "diff names the tables where dev is ahead"
    ok(phlo(env, "promote", "--yes"))
    assert counts(env, "main") == ahead

    # The light reader finds each branch's snapshot through the catalog in PostgreSQL.
    settings = load_settings(env)
    reader = FastReader(settings)
    try:
        light = reader.query("select count(*) as n from silver.fct_glucose_readings", "main")
    finally:
        reader.close()
    assert light.rows[0][0] == ahead[1]["n"]

    # Maintenance (expire everything it may, compact, sweep) keeps every row on both branches.
    lake = Lake(settings.lake_dir, settings.catalog_uri)
    result = run_maintenance(
        lake,
        TABLES,
        protected_snapshots=set(),
        keep_days=0,
        orphan_min_age_s=0,
        now=START + timedelta(days=1),
    )
    assert result.to_json()
    assert counts(env, "main") == ahead and counts(env, "dev") == ahead

    # A backup reads the catalog from PostgreSQL; its restore is a home with the catalog file.
    backup = site.root / "home.tar.gz"
    ok(phlo(env, "backup", str(backup)))
    ok(phlo(env, "backup", "--verify", str(backup)))
    restored = site.root / "restored"
    ok(phlo(site.env(restored, None), "restore", str(backup), "--home", str(restored)))
    assert (restored / "lake" / "catalog.sqlite").exists()
    assert counts(site.env(restored, None), "main") == ahead

    # Pointing the restored home at an empty PostgreSQL catalog moves its catalog there, once.
    moved_into = site.database("restored_catalog")
    env_moved = site.env(restored, moved_into)
    assert counts(env_moved, "main") == ahead
    assert not (restored / "lake" / "catalog.sqlite").exists()
    assert (restored / "lake" / MOVED_CATALOG).exists()
    moved_rows = catalog_rows(moved_into)
    assert [(n, t) for n, t, _ in moved_rows] == [(n, t) for n, t, _ in catalog_rows(catalog)]
    assert all(m.startswith(f"file://{restored.absolute()}/lake/warehouse/") for _, _, m in moved_rows)
    # …and the file catalog cannot be opened stale once its rows live in PostgreSQL.
    one_line_error(
        phlo(site.env(restored, None), "sql", "select 1 as x from raw.glucose_entries"), "moved to"
    )


def test_a_second_home_on_the_same_catalog_is_refused_without_the_password(site: Site) -> None:
    catalog = site.database("shared_catalog")
    first = site.root / "first"
    ok(phlo(site.env(first, catalog), "run"))
    before = catalog_rows(catalog)
    out = failed_run(phlo(site.env(site.root / "second", catalog), "run"), "of another lake")
    assert "s3cret-pw" not in out and redacted(catalog) in out
    assert catalog_rows(catalog) == before


def test_catalog_uri_mistakes_get_one_line_without_the_password(site: Site) -> None:
    home = site.root / "mistakes"
    for wrong in (
        "mysql://u:s3cret-pw@127.0.0.1/db",
        "/var/lib/catalog.sqlite",
        "postgresql://u:s3cret-pw@127.0.0.1/",
    ):
        out = one_line_error(phlo(site.env(home, wrong), "status"), "catalog_uri")
        assert "s3cret-pw" not in out
    refused = "postgresql://u:s3cret-pw@127.0.0.1:9/catalog"  # nothing listens on port 9
    out = failed_run(phlo(site.env(home, refused), "run"), "cannot open the lake's catalog in PostgreSQL")
    assert "s3cret-pw" not in out and "u:***@127.0.0.1:9/catalog" in out
