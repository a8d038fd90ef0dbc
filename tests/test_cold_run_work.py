"""Work a fresh `phlo-tui run` process no longer does, or no longer waits for: asking pandera about
batches the fast path can answer (engine/fastcheck.py, before anything else has validated in the
process), importing modules the program never uses (engine.api.startup.leave_out_unused), planning the
daily basal model's ASOF joins as nested loops (engine/lake/scratch.py), and the models' schema checks
after the build (engine.transform.layers.SchemaChecks: beside it), and opening DuckDB after the import
(engine.lake.scratch.warm_up: beside it), and importing the HTTP client for records a prefetch child read.
Speed itself is measured by bench/cold_start.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow
import pytest

from engine.api.facade import Engine
from engine.config import load_settings
from engine.ingest.tables import RAW_TABLES
from engine.ingest.validation import CheckResult
from engine.lake.scratch import views_cursor
from engine.lake.views import in_zone
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator
from engine.transform import layers
from engine.transform.models import discover_models
from schemas import TABLE_SCHEMAS
from tests.simclock import HOUR, Clock

BASAL = "gold.fct_daily_basal_insulin"


def _python(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_a_run_in_a_fresh_process_asks_pandera_only_about_failing_batches(tmp_path: Path) -> None:
    """Every batch that passes (raw records, each model's output) is answered by the fast path, in a
    process where pandera has validated nothing before: its built-in checks (ge, lt, str_matches) are
    registered by the fast path itself. pandera is asked only where a rule fails (the simulator sends
    some bad records), for its failure cases."""
    code = textwrap.dedent(
        """
        import json
        from pandera.api.pandas.container import DataFrameSchema
        asked = []
        real = DataFrameSchema.validate
        def validate(self, *args, **kwargs):
            try:
                checked = real(self, *args, **kwargs)
            except Exception:
                asked.append([self.name, "failed"])
                raise
            asked.append([self.name, "passed"])
            return checked
        DataFrameSchema.validate = validate
        from engine.api.facade import Engine
        from engine.config import load_settings
        with Engine(load_settings()) as engine:
            run = engine.run_now()
        print(json.dumps({"status": run.status.value, "quarantined": run.totals.quarantined, "asked": asked}))
        """
    )
    with SimulatorServer(GlucoseSimulator(seed=11, clock=Clock())) as server:
        env = {**os.environ, "PHLO_HOME": str(tmp_path / "home"), "NIGHTSCOUT_URL": server.url}
        done = _python(code, {**env, "PHLO_INITIAL_DAYS": "2"})
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["status"] == "succeeded"
    assert [name for name, verdict in outcome["asked"] if verdict == "passed"] == []
    if not outcome["quarantined"]:
        assert outcome["asked"] == []


def test_the_fast_path_answers_built_in_checks_before_pandera_has_validated_anything() -> None:
    """pandera registers its pandas built-in checks when a schema first validates; a fresh process's first
    batch reaches the fast path before that."""
    code = textwrap.dedent(
        """
        import pandas as pd
        import pandera.pandas as pa
        from engine import fastcheck
        schema = pa.DataFrameSchema(
            {
                "glucose": pa.Column(int, [pa.Check.ge(39), pa.Check.lt(1000)]),
                "month": pa.Column(str, pa.Check.str_matches(r"^[0-9]{4}-[0-9]{2}$")),
            },
            strict=True,
        )
        print(fastcheck.evaluate(schema, pd.DataFrame({"glucose": [40, 120], "month": ["2026-05", "2026-06"]})))
        """
    )
    done = _python(code, dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


_MODULES = (
    "import atexit, importlib, json, sys\n"
    "def _report():\n"
    "    found = {}\n"
    "    for name in ('hypothesis', 'geopandas'):\n"
    "        try:\n"
    "            importlib.import_module(name)\n"
    "        except ImportError:\n"
    "            found[name] = 'left out'\n"
    "        else:\n"
    "            found[name] = 'imported'\n"
    "    print('MODULES ' + json.dumps(found), file=sys.stderr)\n"
    "atexit.register(_report)\n"
)
"""A prelude that says at exit whether the modules the program never uses could be imported."""


def _modules(stderr: str) -> dict[str, str]:
    (line,) = [line for line in stderr.splitlines() if line.startswith("MODULES ")]
    found: dict[str, str] = json.loads(line[len("MODULES ") :])
    return found


def test_the_program_leaves_out_what_it_never_uses_and_a_library_caller_keeps_it(tmp_path: Path) -> None:
    pytest.importorskip("hypothesis")  # the test suite's own tool: what the program would import
    env = {**os.environ, "PHLO_HOME": str(tmp_path / "home")}
    program = _python(
        f"{_MODULES}\nimport sys\nsys.argv = ['phlo-tui', 'sql', 'select 1 as n']\n"
        "from phlo_tui.cli import entry\nentry()",
        env,
    )
    assert program.returncode == 0, program.stderr
    assert _modules(program.stderr) == {"hypothesis": "left out", "geopandas": "left out"}
    library = _python(f"{_MODULES}\nfrom phlo_tui.cli import main\nmain(['sql', 'select 1 as n'])", env)
    assert library.returncode == 0, library.stderr
    assert _modules(library.stderr)["hypothesis"] == "imported"


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Two days from the simulator for an in-process engine."""
    with SimulatorServer(GlucoseSimulator(seed=11, clock=Clock())) as server:
        monkeypatch.setenv("PHLO_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("NIGHTSCOUT_URL", server.url)
        monkeypatch.setenv("PHLO_INITIAL_DAYS", "2")
        yield


def test_schema_checks_run_beside_the_build_in_the_models_order(
    site: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each model's schema checks begin when its SQL has run, in a thread of their own, while the next
    models are built; they run one at a time in the models' order, which the gate reports."""
    events: list[tuple[str, str, str]] = []
    real_checks, real_build = layers.schema_checks, layers.build_model

    def checks(model: Any, table: str, rows: pyarrow.Table) -> list[CheckResult]:
        events.append(("check", table, threading.current_thread().name))
        return real_checks(model, table, rows)

    def build(con: Any, model: Any, *args: Any) -> Any:
        events.append(("build", model.name, threading.current_thread().name))
        return real_build(con, model, *args)

    monkeypatch.setattr(layers, "schema_checks", checks)
    monkeypatch.setattr(layers, "build_model", build)
    with Engine(load_settings()) as engine:
        assert engine.run_now().status.value == "succeeded"
    built = [name for kind, name, _ in events if kind == "build"]
    checked = [name for kind, name, _ in events if kind == "check"]
    assert checked == [name for name in built if name in TABLE_SCHEMAS]
    assert {thread for kind, _, thread in events if kind == "build"} == {threading.current_thread().name}
    assert all(thread.startswith("phlo-schema-checks") for kind, _, thread in events if kind == "check")
    first_check = next(i for i, event in enumerate(events) if event[0] == "check")
    last_build = max(i for i, event in enumerate(events) if event[0] == "build")
    assert first_check < last_build


def test_a_check_that_raises_fails_the_gates_step(site: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """As when the gate ran the checks itself: the run fails at its gates step and promotes nothing."""
    real_checks = layers.schema_checks

    def checks(model: Any, table: str, rows: pyarrow.Table) -> list[CheckResult]:
        if table == "silver.fct_glucose_readings":
            raise RuntimeError("a check broke")
        return real_checks(model, table, rows)

    monkeypatch.setattr(layers, "schema_checks", checks)
    with Engine(load_settings()) as engine:
        run = engine.run_now()
        assert run.status.value == "failed"
        (gates,) = [step for step in run.steps if step.name == "gates"]
        assert gates.status.value == "failed"
        assert "a check broke" in (run.error or "") + (gates.error or "")
        assert run.totals.promotion is None


def test_the_basal_models_asof_joins_are_planned_as_asof_joins(site: None) -> None:
    """DuckDB would pair each minute with every temp basal (a nested loop join) when it thinks one side is
    small, the shape of an hourly run's month; the engine's DuckDB keeps its ASOF operator."""
    settings = load_settings()
    with Engine(settings) as engine:
        assert engine.run_now().status.value == "succeeded"
        (model,) = [m for m in discover_models(sources=[t.name for t in RAW_TABLES]) if m.name == BASAL]
        with views_cursor() as cursor:
            con = in_zone(cursor, settings.timezone)
            for name in model.depends_on:
                engine.lake.register_duckdb(con, name, "dev", current_schema=True)
            plan = "\n".join(str(row[1]) for row in con.sql("explain " + model.sql).fetchall())
    assert plan.count("Asof Join") == 3, plan  # the model's three ASOF LEFT JOINs


def test_a_pipeline_command_opens_duckdb_beside_its_import(tmp_path: Path) -> None:
    """engine_class starts the shared DuckDB database in a thread of its own for a pipeline command (it
    opens without Python's lock while the pipeline is imported); other commands do not."""
    code = textwrap.dedent(
        """
        import sys, threading
        from engine.api.startup import engine_class
        engine_class(sys.argv[1])
        import engine.lake.scratch as scratch
        for thread in threading.enumerate():
            if thread.name == "phlo-duckdb-warm-up":
                thread.join(60)
        print(scratch._database is not None)
        """
    )
    env = {**os.environ, "PHLO_HOME": str(tmp_path / "home")}
    for command, opened in (("run", "True"), ("sql", "False")):
        done = _python(code, env, command)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [opened], command


def test_a_prefetched_run_never_imports_the_http_client(tmp_path: Path) -> None:
    """The prefetch child reads the site; the run that takes its records makes no request, and does not
    import requests (nor urllib3) at all."""
    prelude = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('HTTP ' + str(sorted(m for m in ('requests', 'urllib3', 'dlt') "
        "if m in sys.modules)), file=sys.stderr))\n"
    )
    clock = Clock(behind_s=HOUR)
    with SimulatorServer(GlucoseSimulator(seed=11, clock=clock)) as server:
        env = {**os.environ, "PHLO_HOME": str(tmp_path / "home"), "NIGHTSCOUT_URL": server.url}
        env["PHLO_INITIAL_DAYS"] = "2"
        imported = []
        for _ in range(2):  # the first run reads its initial days; the second an hour, prefetched
            done = _python(
                f"{prelude}\nimport sys\nsys.argv = ['phlo-tui', 'run', '--json']\n"
                "from phlo_tui.cli import entry\nentry()",
                {**env, "PHLO_NOW": clock.utc().isoformat()},
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["status"] == "succeeded"
            (line,) = [line for line in done.stderr.splitlines() if line.startswith("HTTP ")]
            imported.append(line)
            clock.now += HOUR
    assert imported[1] == "HTTP []"
