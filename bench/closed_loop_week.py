"""Bench: a simulated closed-loop week (AndroidAPS and Loop modes of the simulator) through the whole
pipeline, and the insulin and carbs gold counts for it, beside what the loop gave (the documents
counted by their uploader's own rules: valid, once per identity, no calculation as a dose), with
the basal insulin and the total daily dose where the tree counts them (the simulator's temp
basals cover every minute, so the basal given is theirs: rate x duration).

With `--before DIR` (a checkout of another commit, e.g. `git archive main | tar -x -C DIR`) that
tree's command line ingests the same week too (`python -m phlo_tui.cli` from the tree's root, so
its own `engine`, `sql` and `schemas` run), against this tree's simulator. Prints figures; asserts
nothing.

    uv run python bench/closed_loop_week.py [--before DIR] [--days 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table
from engine.sim.loop import UPLOADERS
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

ROOT = Path(__file__).resolve().parents[1]
BOLUSES = ("Meal Bolus", "Correction Bolus")


def given(docs: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Bolus insulin, carbs and basal insulin as the loop gave them, by the uploaders' own rules
    (docs/closed-loop.md)."""
    seen: set[tuple[object, ...]] = set()
    insulin = carbs = basal = 0.0
    for doc in sorted(docs, key=lambda d: (d["created_at"], d["_id"])):
        kind = "bolus" if doc["eventType"] in BOLUSES else doc["eventType"]
        key = doc.get("syncIdentifier") or (doc.get("pumpId"), doc.get("pumpSerial"))
        identity = (kind, key) if key != (None, None) else ("document", doc["_id"])
        if doc.get("isValid") is False or identity in seen:
            continue
        seen.add(identity)
        insulin += doc["insulin"] if doc["eventType"] in BOLUSES else 0.0
        carbs += doc["carbs"] if doc["eventType"] == "Carb Correction" else 0.0
        basal += doc["absolute"] * doc["duration"] / 60 if doc["eventType"] == "Temp Basal" else 0.0
    return round(insulin, 2), round(carbs, 2), round(basal, 2)


def gold(tree: Path, url: str, since: str, until: str) -> tuple[float, float, float | None]:
    with tempfile.TemporaryDirectory(prefix="phlo-closed-loop-") as home:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PHLO_")},
            "PHLO_HOME": home,
            "NIGHTSCOUT_URL": url,
            "PHLO_TIMEZONE": "UTC",
            "PHLO_MANAGE_POSTGRES": "false",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
        }
        command = [sys.executable, "-m", "phlo_tui.cli"]
        subprocess.run(
            [*command, "backfill", "--since", since, "--until", until], cwd=tree, env=env, check=False
        )
        sums = "round(sum(total_insulin_units), 2) as insulin, round(sum(total_carbs_g), 2) as carbs"
        where = f" from gold.fct_daily_treatment_totals where reading_date between '{since}' and '{until}'"
        basal = ", round(sum(basal_insulin_units), 2) as basal"
        # A tree before basal was counted has no basal column: ask it for the rest.
        for query in (f"select {sums}{basal}{where}", f"select {sums}{where}"):
            answer = subprocess.run(
                [*command, "sql", query, "--branch", "dev", "--json"],
                cwd=tree,
                env=env,
                check=False,
                capture_output=True,
                text=True,
            )
            if answer.returncode == 0:
                row = json.loads(answer.stdout)[0]
                counted = row.get("basal")
                return float(row["insulin"]), float(row["carbs"]), None if counted is None else float(counted)
        raise SystemExit(f"{tree}: `sql` failed: {answer.stderr.strip()}")


def _units(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another tree to ingest the same week with")
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    today = datetime.now(UTC).date()
    since, until = today - timedelta(days=args.days), today - timedelta(days=1)
    rows = []
    for uploader in UPLOADERS:
        simulator = GlucoseSimulator(seed=42, tz="UTC", uploader=uploader)
        start = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() * 1000)
        end = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() * 1000)
        docs = [
            d
            for d in simulator.treatments(gte=start, lt=end, count=0)
            if start <= datetime.fromisoformat(d["created_at"]).timestamp() * 1000 < end
        ]
        with SimulatorServer(simulator) as server:
            trees = [("before", args.before)] if args.before else []
            for label, tree in [*trees, ("after", ROOT)]:
                insulin, carbs, basal = gold(tree, server.url, since.isoformat(), until.isoformat())
                total = None if basal is None else insulin + basal
                rows.append((uploader, label, f"{insulin:.2f}", _units(basal), _units(total), f"{carbs:.0f}"))
        insulin, carbs, basal = given(docs)
        rows.append(
            (uploader, "given", f"{insulin:.2f}", f"{basal:.2f}", f"{insulin + basal:.2f}", f"{carbs:.0f}")
        )
    print(f"closed-loop week {since} .. {until} (UTC), seed 42")
    print_table(("uploader", "count", "bolus U", "basal U", "total U", "carbs g"), rows)


if __name__ == "__main__":
    main()
