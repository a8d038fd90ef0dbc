"""One test per defect the hardening suite found, on the path a user hits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.facade import Engine
from engine.runstore import RunStatus

pytestmark = pytest.mark.hardening

NOW_MS = int(datetime.now(UTC).timestamp() * 1000)


def _entries(count: int) -> list[dict[str, object]]:
    return [
        {"_id": f"{i:024x}", "type": "sgv", "date": NOW_MS - (count - i) * 300_000, "sgv": 100 + i % 50}
        for i in range(count)
    ]


def test_import_needs_no_nightscout_site(home: Path, tmp_path: Path) -> None:
    # Found by the fuzz tests: `phlo-tui import` refused to start without NIGHTSCOUT_URL.
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_entries(30)))
    with Engine(load_settings()) as engine:
        run = engine.import_file(export)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.summary["stored"] == 30


def test_a_lone_surrogate_does_not_fail_the_batch(home: Path, tmp_path: Path) -> None:
    # Found by the fuzz tests: one "\ud800" escape anywhere in an entry (JSON allows it, UTF-8
    # cannot hold it) failed the validate step, so every run re-fetching it failed too.
    entries = _entries(60)
    entries[3]["device"] = "xDrip\ud959"
    entries[5]["\udfff"] = "unknown key"
    entries[7]["_id"] = "\ud800"
    export = tmp_path / "export.json"
    export.write_text(json.dumps(entries))
    with Engine(load_settings()) as engine:
        run = engine.import_file(export)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.summary["stored"] == 60
        devices = engine.query("select device from raw.glucose_entries where device is not null", "main")
    assert devices.rows == [("xDrip\ufffd",)]
