"""`status`, `quality`, `metrics` and `diff` answered without the engine (engine.api.fastread), as the engine would.

On a real home (a run from the simulator over HTTP, a promotion, then an import held by the quality
gate): each command's output from the light read, through the real command line, is the engine's
output byte for byte (bar the age of the newest reading, which moves with the clock); without the
recorded files, or without a run store, the engine answers and prints the same; `diff` is answered
lightly, with every table's dev equal to its main (after a run that promoted) or dev ahead (the held
import); the light read imports none of the lake's libraries.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, redirect_stdout
from pathlib import Path

import pytest

from engine.api.facade import Engine
from engine.api.reads import RAW_TABLE_NAMES, lake_table_names
from engine.clock import NOW_ENV
from engine.config import load_settings
from engine.ingest.tables import RAW_TABLES
from engine.pipeline import ENTRIES_SOURCE
from engine.runs.records import ENTRIES_WATERMARK
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from phlo_tui import cli
from tests.simclock import START, START_S

DAY_MS = 86_400_000
REFUSED = "the engine answers"
HEAVY = ("pyiceberg", "pandas", "dlt", "pandera", "sqlalchemy", "pyarrow", "sqlglot", "psycopg")


@dataclasses.dataclass
class Lake:
    env: dict[str, str]
    held_run: str


def phlo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh interpreter, logging at INFO (-v) so a refused light read shows."""
    return subprocess.run(
        [sys.executable, "-m", "phlo_tui.cli", "-v", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def home_env(path: Path, url: str, days: int, auto_promote: bool) -> dict[str, str]:
    return {
        "PHLO_HOME": str(path / "home"),
        "PHLO_CONFIG": str(path / "no-config.toml"),
        "PHLO_TIMEZONE": "America/New_York",
        "NIGHTSCOUT_URL": url,
        "PHLO_INITIAL_DAYS": str(days),
        "PHLO_AUTO_PROMOTE": str(auto_promote).lower(),
        "PHLO_MANAGE_POSTGRES": "false",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: START.isoformat(),
    }


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """Three days from the simulator, promoted; then an export with a fifth junk, held by the gate."""
    path = tmp_path_factory.mktemp("light")
    pinned = START_S - 2 * 3600
    with SimulatorServer(GlucoseSimulator(seed=5, clock=lambda: pinned)) as server:
        env = home_env(path, server.url, 3, auto_promote=False)
        run = phlo("run", env=env)
        assert run.returncode == 0, run.stderr
        promoted = phlo("promote", "--yes", env=env)
        assert promoted.returncode == 0, promoted.stderr
        now_ms = int(pinned * 1000)
        good = [
            e for e in server.simulator.export(now_ms - 5 * DAY_MS, now_ms - 4 * DAY_MS) if e["type"] == "sgv"
        ]
        junk = [{"_id": f"junk{i:020d}", "type": "sgv", "sgv": "??", "date": now_ms} for i in range(60)]
        export = path / "bad.json.gz"
        export.write_bytes(gzip.compress(json.dumps(good + junk).encode()))
        held = phlo("import", str(export), "--json", env=env)
        assert held.returncode == 3, held.stderr
        yield Lake(env, json.loads(held.stdout)["id"])


def through_engine(argv: list[str], env: dict[str, str]) -> str:
    """What the command line prints when the engine answers (its fallback: cli._answer over an Engine)."""
    args = cli.build_parser().parse_args(argv)
    with Engine(load_settings(env)) as engine, redirect_stdout(io.StringIO()) as out:
        assert cli._answer(engine, args) == 0
    return out.getvalue()


def steady(argv: list[str], output: str) -> str:
    """The output without what moves with the clock: the age of the newest reading in `status`, and the
    coverage of `metrics` (today's and the period's are measured against the time elapsed)."""
    if argv[0] == "metrics" and "--json" in argv:
        answer = json.loads(output)
        for moving in ("expected_readings", "coverage_pct", "message"):
            answer["period"].pop(moving)
        for row in answer["days"]:
            row.pop("coverage_pct")
            row.pop("expected_reading_count")
        return json.dumps(answer)
    if argv[0] == "metrics":
        # The coverage column is the last; the period's line follows the table.
        return "\n".join(
            line.rsplit(None, 1)[0] for line in output.splitlines() if line and not line.startswith("period ")
        )
    if argv == ["status"]:
        return "\n".join(line for line in output.splitlines() if not line.startswith("freshness:"))
    if argv[:2] != ["status", "--json"]:
        return output
    status = json.loads(output)
    status["freshness"].pop("message")
    return json.dumps(status)


def commands(lake: Lake) -> list[list[str]]:
    return [
        ["status"],
        ["status", "--json"],
        ["quality"],
        ["quality", "--json"],
        ["quality", "--run", lake.held_run, "--json"],
        ["metrics"],
        ["metrics", "--days", "14", "--json"],
        ["metrics", "--branch", "dev"],
        ["metrics", "--branch", "dev", "--days", "30", "--json"],
        ["metrics", "--since", "2020-01-01", "--until", "2100-12-31", "--json"],
    ]


def test_light_answers_are_the_engines(lake: Lake) -> None:
    for argv in commands(lake):
        light = phlo(*argv, env=lake.env)
        assert light.returncode == 0, (argv, light.stderr)
        assert REFUSED not in light.stderr, (argv, light.stderr)
        assert steady(argv, light.stdout) == steady(argv, through_engine(argv, lake.env)), argv
    status = json.loads(phlo("status", "--json", env=lake.env).stdout)
    assert status["gate_errors"] and status["last_promotion"] is not None
    heads = status["tables"]["raw.glucose_entries"]
    assert heads["dev"] != heads["main"], "the held import is on dev only"
    checks = json.loads(phlo("quality", "--run", lake.held_run, "--json", env=lake.env).stdout)["checks"]
    assert any(c["check"] == "quarantine_ratio" for c in checks)
    main = json.loads(phlo("metrics", "--since", "2020-01-01", "--json", env=lake.env).stdout)["days"]
    dev = json.loads(
        phlo("metrics", "--since", "2020-01-01", "--branch", "dev", "--json", env=lake.env).stdout
    )["days"]
    assert main and len(dev) > len(main), "the held import's older day is on dev only"


def test_the_publish_target_is_the_engines(lake: Lake) -> None:
    """A DSN (shown redacted) and the private cluster (described, not started) alike."""
    dsn = {**lake.env, "PHLO_POSTGRES_DSN": "postgresql://phlo:hunter2@db.example:5433/lake"}
    managed = {**lake.env, "PHLO_MANAGE_POSTGRES": "true"}
    argv = ["status", "--json"]
    for env in (dsn, managed):
        light = phlo(*argv, env=env)
        assert light.returncode == 0 and REFUSED not in light.stderr, light.stderr
        assert steady(argv, light.stdout) == steady(argv, through_engine(argv, env))
        assert "hunter2" not in light.stdout
    assert json.loads(phlo(*argv, env=dsn).stdout)["publish_target"]["host"] == "db.example"


def test_without_recorded_files_the_engine_answers_the_same(lake: Lake) -> None:
    argv = ["metrics", "--since", "2020-01-01", "--json"]
    light = phlo(*argv, env=lake.env)
    assert REFUSED not in light.stderr
    runs_db = load_settings(lake.env).runs_db
    with closing(sqlite3.connect(runs_db)) as con, con:
        con.execute("delete from snapshot_files")
    fallback = phlo(*argv, env=lake.env)
    assert fallback.returncode == 0 and f"{REFUSED} metrics" in fallback.stderr
    assert steady(argv, fallback.stdout) == steady(argv, light.stdout)
    # status and quality need no recorded files.
    assert REFUSED not in phlo("status", env=lake.env).stderr
    with Engine(load_settings(lake.env)) as engine:
        engine.record_early_files()
    again = phlo(*argv, env=lake.env)
    assert REFUSED not in again.stderr and steady(argv, again.stdout) == steady(argv, light.stdout)


def test_a_home_without_a_run_store_is_answered_by_the_engine(tmp_path: Path) -> None:
    env = {"PHLO_HOME": str(tmp_path / "new"), "PHLO_CONFIG": str(tmp_path / "no-config.toml")}
    first = phlo("status", "--json", env=env)
    assert first.returncode == 0 and f"{REFUSED} status" in first.stderr, first.stderr
    assert json.loads(first.stdout)["tables"] == {}
    quality = phlo("quality", "--json", env=env)
    assert quality.returncode == 0 and json.loads(quality.stdout) == {"checks": []}
    # A user error is the engine's to explain, word for word.
    bad = phlo("metrics", "--since", "yesterday", env=env)
    assert bad.returncode == 1 and "YYYY-MM-DD" in bad.stderr and "Traceback" not in bad.stderr


def imports_of(argv: list[str], env: dict[str, str], unwanted: tuple[str, ...]) -> tuple[str, str]:
    """(stdout, "<the unwanted libraries it imported> <exit code>") of `phlo-tui ARGV` in a fresh interpreter;
    `unwanted` names packages or modules (a package's submodules count as the package)."""
    code = (
        "import sys;"
        "from phlo_tui.cli import main;"
        f"code = main({argv!r});"
        f"unwanted = {unwanted!r};"
        "top = lambda m: m.split('.')[0];"
        "print(sorted({top(m) if top(m) in unwanted else m for m in sys.modules "
        "if m in unwanted or top(m) in unwanted}), code, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    return result.stdout, (result.stderr.strip().splitlines() or [""])[-1] + "\n" + result.stderr[-2000:]


def test_the_light_read_imports_no_heavy_library(lake: Lake) -> None:
    """In a fresh interpreter, as a script calling `phlo-tui status --json` every minute would."""
    for argv in (["status", "--json"], ["quality"], ["metrics", "--json"]):
        stdout, imported = imports_of(argv, lake.env, HEAVY)
        assert imported.startswith("[] 0\n"), (argv, imported)
        assert stdout


def test_table_names_are_the_engines(tmp_path: Path) -> None:
    """engine.api.reads lists the lake tables without pyiceberg or sqlglot: the same names as the engine."""
    assert tuple(t.name for t in RAW_TABLES) == RAW_TABLE_NAMES
    assert ENTRIES_WATERMARK == ENTRIES_SOURCE
    env = {"PHLO_HOME": str(tmp_path / "home"), "PHLO_CONFIG": str(tmp_path / "no-config.toml")}
    with Engine(load_settings(env)) as engine:
        assert sorted(lake_table_names()) == sorted(engine.lake_tables())


def test_the_light_read_leaves_the_home_as_it_was(lake: Lake) -> None:
    """A read-only command creates nothing in the home: no -wal/-shm left beside the run store or the
    catalog (a read-only SQLite connection cannot remove them when it closes), and changes no file."""
    home = load_settings(lake.env).home
    for database in (home / "runs.sqlite", home / "lake" / "catalog.sqlite"):
        # Earlier tests' engines closed: as their last connection would, fold the WAL in (and remove it).
        with closing(sqlite3.connect(database)) as con:
            con.execute("pragma wal_checkpoint(truncate)")

    def files() -> dict[str, str]:
        """Each file's digest (a -shm file's name only: readers mark it), taken in another process: reading
        a database here would drop this process's SQLite locks (POSIX locks go with any close)."""
        code = (
            "import hashlib, json, sys; from pathlib import Path; home = Path(sys.argv[1]);"
            "print(json.dumps({str(p.relative_to(home)): '' if p.name.endswith('-shm') else "
            "hashlib.sha256(p.read_bytes()).hexdigest() for p in home.rglob('*') if p.is_file()}))"
        )
        listing = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, check=True)
        return dict(json.loads(listing.stdout))

    before = files()
    for argv in (["status", "--json"], ["quality"], ["metrics", "--branch", "dev", "--json"]):
        light = phlo(*argv, env=lake.env)
        assert light.returncode == 0 and REFUSED not in light.stderr, (argv, light.stderr)
        after = files()
        assert sorted(after) == sorted(before), argv
        assert after == before, argv


def test_odd_metrics_arguments_are_answered_without_a_traceback(lake: Lake) -> None:
    # Python takes 20200101 for a date, DuckDB's cast did not ("SQL error ... check the query").
    iso = phlo("metrics", "--since", "2020-01-01", "--until", "2100-12-31", "--json", env=lake.env)
    basic = phlo("metrics", "--since", "20200101", "--until", "21001231", "--json", env=lake.env)
    assert basic.returncode == 0 and REFUSED not in basic.stderr, basic.stderr
    argv = ["metrics", "--json"]
    assert steady(argv, basic.stdout) == steady(argv, iso.stdout) and json.loads(iso.stdout)["days"]
    # More days than the calendar holds is a user mistake, explained, on both paths.
    for env in (lake.env, {**lake.env, "PHLO_HOME": lake.env["PHLO_HOME"] + "-none"}):
        huge = phlo("metrics", "--days", "1000000", env=env)
        assert huge.returncode == 1 and "Traceback" not in huge.stderr, huge.stderr
        assert "--days" in huge.stderr and not huge.stdout


def test_gzipped_table_metadata_reads_as_the_engine_reads_it(lake: Lake) -> None:
    """pyiceberg reads a `.gz.metadata.json` (written with write.metadata.compression-codec); a damaged
    one is the engine's to explain, not a traceback of the light read."""
    catalog = load_settings(lake.env).lake_dir / "catalog.sqlite"
    namespace, _, name = "gold.fct_daily_glucose_metrics".partition(".")
    where = "where table_namespace = ? and table_name = ?"
    with closing(sqlite3.connect(catalog)) as con:
        (location,) = con.execute(
            f"select metadata_location from iceberg_tables {where}", (namespace, name)
        ).fetchone()
    plain = Path(location.removeprefix("file://"))
    gzipped = plain.with_name("99999-zipped.gz.metadata.json")
    damaged = plain.with_name("99998-damaged.gz.metadata.json")
    gzipped.write_bytes(gzip.compress(plain.read_bytes()))
    damaged.write_bytes(gzipped.read_bytes()[:-20])

    def point_to(path: Path) -> None:
        with closing(sqlite3.connect(catalog)) as con, con:
            con.execute(
                f"update iceberg_tables set metadata_location = ? {where}", (path.as_uri(), namespace, name)
            )

    try:
        point_to(gzipped)
        for argv in (["status", "--json"], ["metrics", "--since", "2020-01-01", "--json"]):
            light = phlo(*argv, env=lake.env)
            assert light.returncode == 0 and REFUSED not in light.stderr, (argv, light.stderr)
            assert steady(argv, light.stdout) == steady(argv, through_engine(argv, lake.env)), argv
        point_to(damaged)
        for argv in (["status"], ["metrics"]):
            broken = phlo(*argv, env=lake.env)
            assert f"{REFUSED} {argv[0]}" in broken.stderr and "Traceback" not in broken.stderr, broken.stderr
            assert broken.returncode == 1 and "phlo-tui: error:" in broken.stderr
    finally:
        point_to(plain)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two days from the simulator, promoted by the run itself: every table's dev equals its main."""
    path = tmp_path_factory.mktemp("promoted")
    pinned = START_S - 2 * 3600
    with SimulatorServer(GlucoseSimulator(seed=5, clock=lambda: pinned)) as server:
        env = home_env(path, server.url, 2, auto_promote=True)
        run = phlo("run", env=env)
        assert run.returncode == 0, run.stderr
        yield env


def test_diff_is_answered_lightly_while_main_equals_dev(promoted: dict[str, str]) -> None:
    for argv in (["diff"], ["diff", "--json"]):
        light = phlo(*argv, env=promoted)
        assert light.returncode == 0 and REFUSED not in light.stderr, (argv, light.stderr)
        assert light.stdout == through_engine(argv, promoted), argv
    tables = json.loads(phlo("diff", "--json", env=promoted).stdout)["tables"]
    assert [t["table"] for t in tables] == lake_table_names()
    assert all(t["dev_snapshot"] == t["main_snapshot"] is not None for t in tables)


def test_diff_with_dev_ahead_is_the_engines(lake: Lake) -> None:
    """The held import left dev ahead: its rows are compared in the data files its manifests list, by the
    light read, which prints what the engine prints."""
    for argv in (["diff"], ["diff", "--json"]):
        answer = phlo(*argv, env=lake.env)
        assert answer.returncode == 0 and REFUSED not in answer.stderr, (argv, answer.stderr)
        assert answer.stdout == through_engine(argv, lake.env), argv
    tables = {t["table"]: t for t in json.loads(phlo("diff", "--json", env=lake.env).stdout)["tables"]}
    assert tables["raw.glucose_entries"]["rows_added"] > 0


def test_a_damaged_manifest_list_is_the_engines_to_explain(lake: Lake) -> None:
    """The light diff never answers from what it cannot read: the engine reads it, and says what is wrong."""
    catalog = load_settings(lake.env).lake_dir / "catalog.sqlite"
    where = "where table_namespace = 'raw' and table_name = 'glucose_entries'"
    with closing(sqlite3.connect(catalog)) as con:
        (location,) = con.execute(f"select metadata_location from iceberg_tables {where}").fetchone()
    plain = Path(location.removeprefix("file://"))
    metadata = json.loads(plain.read_text())
    dev = metadata["refs"]["dev"]["snapshot-id"]
    snapshot = next(s for s in metadata["snapshots"] if s["snapshot-id"] == dev)
    manifest_list = Path(snapshot["manifest-list"].removeprefix("file://"))
    damaged = manifest_list.with_name("damaged-" + manifest_list.name)
    damaged.write_bytes(manifest_list.read_bytes()[:-40])
    snapshot["manifest-list"] = damaged.as_uri()
    pointing = plain.with_name("99997-damaged-list.metadata.json")
    pointing.write_text(json.dumps(metadata))

    def point_to(path: Path) -> None:
        with closing(sqlite3.connect(catalog)) as con, con:
            con.execute(f"update iceberg_tables set metadata_location = ? {where}", (path.as_uri(),))

    try:
        point_to(pointing)
        broken = phlo("diff", env=lake.env)
        assert f"{REFUSED} diff" in broken.stderr and "Traceback" not in broken.stderr, broken.stderr
        assert broken.returncode == 1 and "phlo-tui: error:" in broken.stderr and not broken.stdout
    finally:
        point_to(plain)


def test_diff_with_dev_ahead_imports_no_heavy_library(lake: Lake) -> None:
    """Neither the lake's libraries nor the engine's facade or lake store: the manifests are read with the
    standard library (engine.lake.avro)."""
    unwanted = (*HEAVY, "engine.api.facade", "engine.lake.store", "engine.lake.promotion")
    for argv in (["diff"], ["diff", "--json"]):
        stdout, imported = imports_of(argv, lake.env, unwanted)
        assert imported.startswith("[] 0\n"), (argv, imported)
        assert "raw.glucose_entries" in stdout


def test_diff_and_status_import_no_heavy_library(promoted: dict[str, str]) -> None:
    """A fresh `phlo-tui diff` or `status` process imports neither the lake's libraries nor the
    dashboard's, the report's or the scheduler's: it reads the heads from the tables' metadata."""
    unwanted = (*HEAVY, "textual", "matplotlib", "apscheduler", "requests", "httpx")
    for argv in (["diff"], ["diff", "--json"], ["status"]):
        stdout, imported = imports_of(argv, promoted, unwanted)
        assert imported.startswith("[] 0\n"), (argv, imported)
        assert "raw.glucose_entries" in stdout or "home:" in stdout


def test_a_run_imports_neither_the_dashboard_nor_the_report(promoted: dict[str, str]) -> None:
    """`phlo-tui run` needs the lake's libraries, not Textual, matplotlib or the scheduler."""
    stdout, imported = imports_of(["run"], promoted, ("textual", "matplotlib", "apscheduler", "httpx"))
    assert imported.startswith("[] 0\n"), imported
    assert "succeeded" in stdout
