"""What a fresh `phlo-tui run` process no longer waits for: the private PostgreSQL is started while the run
goes on (engine/publish/prestart.py), and the tables each model reads are remembered in the home, so
the models' SQL is not parsed again (engine/transform/model_refs.py). Speed itself is measured by
bench/cold_start.py, not asserted here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from engine.api.facade import MODEL_REFERENCES, Engine
from engine.config import load_settings
from engine.ingest.tables import RAW_TABLES
from engine.lake.store import Lake
from engine.publish.prestart import start_target
from engine.publish.publisher import Publisher
from engine.runs.records import RunStatus
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from engine.transform.model_files import SQL_DIR
from engine.transform.models import discover_models
from tests.pgclusters import cluster_of, remove_private_cluster
from tests.pgserver import server_bindir

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [t.name for t in RAW_TABLES]
needs_server = pytest.mark.skipif(
    server_bindir() is None, reason="PostgreSQL server binaries are not installed"
)


def reads(models: list) -> list[tuple[str, tuple[str, ...]]]:
    return [(m.name, m.depends_on) for m in models]


def test_remembered_references_give_the_parsed_models_without_sqlglot(tmp_path: Path) -> None:
    parsed = reads(discover_models(sources=SOURCES))
    remembered = tmp_path / MODEL_REFERENCES
    assert reads(discover_models(sources=SOURCES, references=remembered)) == parsed
    assert len(json.loads(remembered.read_text())["models"]) == len(parsed)
    # A fresh process finds them remembered: the same models, and sqlglot never imported.
    code = (
        "import json, sys; from pathlib import Path;"
        "from engine.ingest.tables import RAW_TABLES;"
        "from engine.transform.models import discover_models;"
        "models = discover_models(sources=[t.name for t in RAW_TABLES], references=Path(sys.argv[1]));"
        "print(json.dumps({'sqlglot': 'sqlglot' in sys.modules,"
        " 'models': [[m.name, list(m.depends_on)] for m in models]}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(remembered)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    answer = json.loads(done.stdout)
    assert answer["sqlglot"] is False
    assert [(name, tuple(deps)) for name, deps in answer["models"]] == parsed


def test_a_changed_model_is_parsed_again_and_a_damaged_memory_ignored(tmp_path: Path) -> None:
    root = tmp_path / "sql"
    shutil.copytree(SQL_DIR, root)
    remembered = tmp_path / MODEL_REFERENCES
    before = dict(reads(discover_models(root, SOURCES, references=remembered)))
    assert "raw.treatments" not in before["marts.mrt_glucose_overview"]
    model = root / "marts" / "mrt_glucose_overview.sql"
    sql = model.read_text().rstrip().rstrip(";")
    model.write_text(f"select * from ({sql}) as o where exists (select 1 from raw.treatments)\n")
    after = dict(reads(discover_models(root, SOURCES, references=remembered)))
    assert "raw.treatments" in after["marts.mrt_glucose_overview"]
    # Only the current models' entries are kept.
    assert len(json.loads(remembered.read_text())["models"]) == len(after)
    # A memory that is not ours (or says something else) is parsed again, and rewritten.
    remembered.write_text("{not json")
    assert dict(reads(discover_models(root, SOURCES, references=remembered))) == after
    assert json.loads(remembered.read_text())["format"] == 1


@needs_server
def test_the_private_postgresql_is_started_ahead_and_the_publish_uses_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(
        {"PHLO_HOME": str(home), "PHLO_MANAGE_POSTGRES": "true"}, config_path=tmp_path / "no-config.toml"
    )
    home.mkdir(mode=0o700)
    publisher = Publisher(settings, Lake(home / "lake"))
    try:
        thread = start_target(publisher)
        assert thread is not None
        thread.join(120)
        target = publisher.describe_target()
        assert target["running"] and target["started_by_this_process"]
        assert start_target(publisher) is None  # already running here: nothing more to start
        publisher.close()
        assert publisher.describe_target()["running"] is False
    finally:
        publisher.close()
        remove_private_cluster(home)
    # Publishing to a server given by DSN: nothing to start.
    other = load_settings(
        {"PHLO_HOME": str(tmp_path / "other"), "PHLO_POSTGRES_DSN": "postgresql://u@127.0.0.1:9/db"},
        config_path=tmp_path / "no-config.toml",
    )
    assert start_target(Publisher(other, Lake(tmp_path / "other" / "lake"))) is None


@needs_server
def test_a_run_starts_its_private_postgresql_before_its_publish_step(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with SimulatorServer(GlucoseSimulator(seed=3, tz="UTC")) as server:
        env = {
            "PHLO_HOME": str(home),
            "NIGHTSCOUT_URL": server.url,
            "PHLO_TIMEZONE": "UTC",
            "PHLO_INITIAL_DAYS": "2",
            "PHLO_MANAGE_POSTGRES": "true",
        }
        settings = load_settings(env, config_path=tmp_path / "no-config.toml")
        try:
            # The first run creates the cluster (initdb); each Engine stops the server it started.
            runs = []
            for _ in range(2):
                with Engine(settings) as engine:
                    runs.append(engine.run_now(full_refresh=True))
            log = cluster_of(home).log_file.read_text()
        finally:
            remove_private_cluster(home)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 2, runs[-1].error
    publish = next(s for s in runs[-1].steps if s.name == "publish")
    # "2026-01-01 12:00:00.123 UTC [pid] LOG:  starting PostgreSQL 15..." in the server's log.
    starts = [
        datetime.strptime(line[:23] + "+0000", "%Y-%m-%d %H:%M:%S.%f%z")
        for line in log.splitlines()
        if "LOG:  starting PostgreSQL" in line
    ]
    assert len(starts) == 2
    assert runs[-1].started_at < starts[-1] < publish.started_at
