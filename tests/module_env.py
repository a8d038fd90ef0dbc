"""The environment a module-scoped fixture gives the engine it runs in-process: module fixtures run outside
tests/conftest.py's per-test `isolated_env`, so they clear the developer's settings themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.clock import NOW_ENV
from tests.simclock import START


def engine_env(mp: pytest.MonkeyPatch, path: Path, url: str, **extra: str) -> dict[str, str]:
    """Set (through `mp`) and return a home under `path` reading the simulator at `url`: three initial
    days in New York, no PostgreSQL, at the suite's data time; `extra` adds or overrides settings. Every
    other PHLO_* and NIGHTSCOUT_* variable is removed."""
    for var in list(os.environ):
        if var.startswith(("PHLO_", "NIGHTSCOUT_")):
            mp.delenv(var)
    env = {
        "PHLO_HOME": str(path / "home"),
        "PHLO_CONFIG": str(path / "no-config.toml"),
        "PHLO_TIMEZONE": "America/New_York",
        "NIGHTSCOUT_URL": url,
        "PHLO_INITIAL_DAYS": "3",
        "PHLO_MANAGE_POSTGRES": "false",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        NOW_ENV: START.isoformat(),
        **extra,
    }
    for key, value in env.items():
        mp.setenv(key, value)
    return env
