"""Shared fixtures: an isolated environment per test, a phlo home in tmp_path, the simulator over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.clock import NOW_ENV
from tests.pgserver import PgServer, server_bindir
from tests.simclock import START

# Module-scoped fixtures run outside `isolated_env`: they see the suite's data time too.
os.environ[NOW_ENV] = START.isoformat()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own settings, config file or Nightscout site."""
    for var in list(os.environ):
        if var.startswith(("PHLO_", "NIGHTSCOUT_")):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PHLO_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    # A private PostgreSQL per test home costs seconds; tests/test_publish.py starts its own.
    monkeypatch.setenv("PHLO_MANAGE_POSTGRES", "false")
    # Data time of every engine, simulator and subprocess of the test (tests/simclock.py).
    monkeypatch.setenv(NOW_ENV, START.isoformat())


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    """A real PostgreSQL started from the system's server binaries (as user postgres when root), one per
    test module: each test makes its own database (`pg.create_database(name)`). Skips the module's tests
    that use it when the binaries are not installed."""
    bindir = server_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = PgServer(bindir).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session", autouse=True)
def no_private_cluster_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that makes the engine manage a PostgreSQL removes it (tests/pgclusters.py): one left
    under the session's homes fails the session, and is removed."""
    from tests.pgclusters import leftover_clusters, remove_private_cluster

    yield
    left = leftover_clusters(tmp_path_factory.getbasetemp())
    for cluster_dir in left:
        remove_private_cluster(cluster_dir.parent)
    assert not left, f"private PostgreSQL clusters left behind by tests: {[str(p) for p in left]}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("PHLO_HOME", str(path))
    monkeypatch.setenv("PHLO_TIMEZONE", "UTC")
    return path


@pytest.fixture
def sim_server() -> Iterator[object]:
    from engine.sim.server import SimulatorServer
    from engine.sim.simulator import GlucoseSimulator

    with SimulatorServer(GlucoseSimulator(seed=7)) as server:
        yield server
