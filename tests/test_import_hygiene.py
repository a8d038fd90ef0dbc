"""The engine never imports the UI: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_engine_imports_without_textual() -> None:
    code = (
        "import sys, engine.api.facade, engine.pipeline, engine.config;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'phlo_tui')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_imports_without_the_lake() -> None:
    """The dashboard paints before the engine loads: its modules leave the heavy libraries to the worker
    that constructs the engine (they take seconds to import), and matplotlib to the report's writer."""
    code = (
        "import sys, phlo_tui.app, phlo_tui.cli, engine.outputs.report.export;"
        "heavy = ('pyiceberg', 'pandas', 'pyarrow', 'dlt', 'duckdb', 'pandera', 'sqlalchemy', 'matplotlib');"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & set(heavy));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


MODULE_LINES_MAX = 500  # docs/architecture.md: a module longer than this is split by concern


def test_no_module_of_the_engine_or_the_dashboard_passes_500_lines() -> None:
    root = Path(__file__).resolve().parents[1]
    long = {
        str(path.relative_to(root)): lines
        for package in ("engine", "phlo_tui")
        for path in sorted((root / package).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MODULE_LINES_MAX
    }
    assert not long, f"split these by concern: {long}"
