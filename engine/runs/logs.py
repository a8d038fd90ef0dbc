"""Logging for the engine: one line per event with its level and run id, to stderr and rotating files."""

from __future__ import annotations

import contextvars
import io
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import TextIO

CURRENT_RUN: contextvars.ContextVar[str] = contextvars.ContextVar("phlo_run_id", default="-")
FORMAT = "%(asctime)s %(levelname)s run=%(run_id)s %(name)s: %(message)s"


class RunIdFilter(logging.Filter):
    """Stamps every record with the run being executed (or '-')."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = CURRENT_RUN.get()
        return True


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Opens each log file (the first and every one after a rollover) 0600: logs name sites and files."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        return io.TextIOWrapper(
            io.FileIO(fd, "a"),
            encoding=io.text_encoding(self.encoding),
            errors=self.errors,
            write_through=True,
        )


def setup_logging(logs_dir: Path | None, *, level: int = logging.INFO, stream: TextIO = sys.stderr) -> None:
    """Log to `stream` and, when `logs_dir` is given, to `logs_dir/phlo-tui.log` (5 MB × 5, rotated)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    if logs_dir is not None:
        logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handlers.append(
            _PrivateRotatingFileHandler(logs_dir / "phlo-tui.log", maxBytes=5_000_000, backupCount=5)
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RunIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays at warnings: the log is one line per engine event.
    for noisy in ("apscheduler", "urllib3", "dlt", "pyiceberg", "sqlalchemy", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # sqlglot warns "Applying array index offset" for every DuckDB list index it reads: not news.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
