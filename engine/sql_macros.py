"""The DuckDB macros of sql/macros/: SQL that several models and reads share, written once.

Defined once per DuckDB database (about 10 ms): by engine.lake.views.connect for a new connection, by
engine.lake.scratch for the shared database the layer build uses, by the SQL test harness and by the dbt
bench's on-run-start. Stdlib only: the light reader imports it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

MACRO_DIR = Path(__file__).resolve().parents[1] / "sql" / "macros"


class _Connection(Protocol):
    def execute(self, query: str) -> object: ...


def macro_files(root: Path = MACRO_DIR) -> list[Path]:
    """Each file is `create or replace macro` statements, defined in name order."""
    return sorted(root.glob("*.sql"))


@functools.cache
def _macro_sql() -> tuple[str, ...]:
    return tuple(path.read_text() for path in macro_files())


def define_macros(con: _Connection) -> None:
    """Define every macro on `con` (idempotent: each is a `create or replace`)."""
    for sql in _macro_sql():
        con.execute(sql)
