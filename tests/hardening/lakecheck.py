"""What a home must look like after any crash: readable tables, `main` as recorded, no duplicates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from engine.facade import BRANCHES, Engine
from engine.runstore import PromotionState

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def assert_lake_sound(engine: Engine) -> dict[str, dict[str, int]]:
    """Every table scans on both branches (pyiceberg and DuckDB), `main` is what the promotion
    records say, raw `_id`s and silver readings are unique. Returns row counts per table and branch."""
    counts: dict[str, dict[str, int]] = {}
    pinned = engine.main_snapshots()
    done = engine.store.last_promotion()
    pending = engine.store.promotions(PromotionState.PENDING)
    for name in engine.lake_tables():
        if not engine.lake.table_exists(name):
            continue
        counts[name] = {}
        for branch in BRANCHES:
            rows = engine.lake.read_arrow(name, branch)
            sql = engine.query(f"select count(*) from {name}", branch).rows[0][0]
            if branch == "dev" or not pending:
                # With a pending promotion, readers of main stay on the snapshots it started from.
                if branch == "dev" or engine.lake.snapshot_id(name, "main") == pinned.get(name):
                    assert sql == rows.num_rows, (name, branch, sql, rows.num_rows)
            counts[name][branch] = int(sql)
        if done is not None and not pending:
            assert engine.lake.snapshot_id(name, "main") == done.snapshot(name), (
                f"main of {name} is not the last promotion's snapshot"
            )
    for branch in BRANCHES:
        if "raw.glucose_entries" in counts:
            ids = engine.lake.read_arrow("raw.glucose_entries", branch, columns=["_id"])["_id"]
            assert pc.count_distinct(ids).as_py() == len(ids), f"duplicate raw _ids on {branch}"
        if "silver.fct_glucose_readings" in counts:
            dup = engine.query(
                "select count(*) - count(distinct entry_id), count(*) - count(distinct reading_ts) "
                "from silver.fct_glucose_readings",
                branch,
            ).rows[0]
            assert dup == (0, 0), f"duplicate silver readings on {branch}: {dup}"
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
