"""The front door for what the command line and the dashboard start besides reads: backups, exports, the
clinic report, the daemon, the simulator, logging; and the types their answers come in.

Each name is imported from its stage's module when first asked for (PEP 562), so `from engine.api.commands
import backup` costs what importing engine.outputs.backup costs and nothing more: the command line stays
light. `phlo_tui` takes these from here, never from the stages (the import contract in pyproject.toml).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

_HOME = {
    "Daemon": "engine.daemon",
    "TableDiff": "engine.lake.diff",
    "QueryResult": "engine.lake.views",
    "backup": "engine.outputs.backup",
    "restore": "engine.outputs.backup",
    "verify": "engine.outputs.archive",
    "ENTRIES_TABLE": "engine.outputs.export",
    "export_nightscout_entries": "engine.outputs.export",
    "export_table": "engine.outputs.export",
    "reader_tables": "engine.outputs.export",
    "ReportReader": "engine.outputs.report.data",
    "ReportData": "engine.outputs.report.data",
    "load_report": "engine.outputs.report.data",
    "export_loaded": "engine.outputs.report.export",
    "ForkedCall": "engine.outputs.report.forked",
    "can_fork": "engine.outputs.report.forked",
    "ReportResult": "engine.outputs.report.export",
    "default_report_path": "engine.outputs.report.export",
    "export_report": "engine.outputs.report.export",
    "Period": "engine.outputs.report.period",
    "resolve_period": "engine.outputs.report.period",
    "setup_logging": "engine.runs.logs",
    "export_command": "engine.sim.export",
    "serve_forever": "engine.sim.server",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
