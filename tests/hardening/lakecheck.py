"""What a home must look like after any crash: readable tables, `main` as recorded, no duplicates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.api.facade import BRANCHES, Engine
from engine.lake.views import connect
from engine.runs.records import PromotionState

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def assert_lake_sound(engine: Engine) -> dict[str, dict[str, int]]:
    """Every table scans on both branches (pyiceberg and DuckDB), `main` is what the promotion
    records say, raw `_id`s and silver readings are unique. Returns row counts per table and branch."""
    counts: dict[str, dict[str, int]] = {}
    pinned = engine.main_snapshots()
    done = engine.store.last_promotion()
    pending = engine.store.promotions(PromotionState.PENDING)
    tables = [t for t in engine.lake_tables() if engine.lake.table_exists(t)]
    for branch in BRANCHES:
        con = connect("UTC")
        try:
            for name in tables:
                snapshot = pinned.get(name) if branch == "main" else None
                engine.lake.register_duckdb(con, name, branch, snapshot_id=snapshot)
                sql_rows = con.sql(f"select count(*) from {name}").fetchall()[0][0]
                if snapshot is None or snapshot == engine.lake.snapshot_id(name, branch):
                    # With a pending promotion, readers of main stay on the snapshots it started from.
                    assert sql_rows == engine.lake.read_arrow(name, branch).num_rows, (name, branch)
                counts.setdefault(name, {})[branch] = int(sql_rows)
            if "raw.glucose_entries" in tables:
                dup = con.sql("select count(*) - count(distinct _id) from raw.glucose_entries").fetchall()
                assert dup == [(0,)], f"duplicate raw _ids on {branch}: {dup}"
            if "silver.fct_glucose_readings" in tables:
                dup = con.sql(
                    "select count(*) - count(distinct entry_id), count(*) - count(distinct reading_ts) "
                    "from silver.fct_glucose_readings"
                ).fetchall()
                assert dup == [(0, 0)], f"duplicate silver readings on {branch}: {dup}"
        finally:
            con.close()
    if done is not None and not pending:
        for name in tables:
            assert engine.lake.snapshot_id(name, "main") == done.snapshot(name), (
                f"main of {name} is not the last promotion's snapshot"
            )
    return counts


class Zygote:
    """The killer.py process: forks one `phlo-tui` run per request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "killer.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def run(
        self, argv: list[str], env: dict[str, str], out: Path, when: str = "none", target: str = ""
    ) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"argv": argv, "env": env, "out": str(out), "when": when, "target": target}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return int(answer["status"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)
