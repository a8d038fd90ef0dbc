"""bench/run.py end to end on two days of history, one repeat: its last line is the JSON of every figure.

Times are not asserted (the machine is shared and noisy); that the figures exist, that dbt's outputs
equal ours and that iglu's daily metrics agree with ours are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pgserver import server_bindir
from tests.simclock import START

REPO = Path(__file__).resolve().parents[1]
KEYS = {
    "backfill_365d_s",
    "incremental_run_s",
    "cli_cold_run_s",
    "cli_cold_diff_s",
    "layers_incremental_s",
    "ratio_vs_dbt_duckdb",
    "ratio_vs_dbt_cli",
    "ratio_vs_iglu",
    "ratio_vs_iglu_365d",
    "iglu_values_agree",
    "iglu_max_abs_diff",
    "ratio_vs_httpx_baseline",
    "fetch_rows_agree",
    "publish_s",
    "tui_first_paint_s",
    "peak_rss_mb",
    "report_14d_s",
    "report_90d_s",
    "import_csv_rows_per_s",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_bindir() is None, reason="PostgreSQL server binaries are not installed"),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def test_run_prints_every_figure_as_json_last() -> None:
    # dbt lives in the bench extra, which `./scripts/test` installs (`uv run --extra bench` by hand).
    pytest.importorskip("dbt.cli.main", reason="dbt-core is in the bench extra: uv run --extra bench pytest")
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--days",
            "2",
            "--repeats",
            "1",
            "--hours",
            "1",
            "--start",
            START.isoformat(),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert set(figures) >= KEYS, KEYS - set(figures)
    # Two days are less than a year: the backfill is not scaled up to one.
    assert figures["days"] == 2 and figures["backfill_365d_s"] is None and figures["backfill_s"] > 0
    assert figures["dbt_outputs_agree"] is True
    assert figures["iglu_values_agree"] is True
    assert figures["fetch_rows_agree"] is True
    assert set(figures["iglu_max_abs_diff"]) >= {"avg_glucose_mg_dl", "gri", "lbgi", "hbgi"}
    # Two days of history: the 90-day and the 365-day periods both hold all of them (partial first and last days too).
    assert 2 <= figures["iglu_days"] == figures["iglu_365d_days"] <= 4
    for key in KEYS - {"backfill_365d_s", "iglu_values_agree", "iglu_max_abs_diff", "fetch_rows_agree"}:
        assert figures[key] > 0, key
    assert "figure" in done.stdout and "target" in done.stdout
    # The targets are printed beside the figures: warm dbt >= 1, a `dbt run` process >= 3, iglu >= 5.
    assert figures["targets"]["ratio_vs_dbt_duckdb"] == ">= 1"
    assert figures["targets"]["ratio_vs_dbt_cli"] == ">= 3"
    assert figures["targets"]["ratio_vs_iglu"] == ">= 5"
    assert figures["targets"]["report_14d_s"] == "<= 3" and figures["targets"]["report_90d_s"] == "<= 5"
    # A fresh `phlo-tui run` process on the history <= 4 s, a fresh `phlo-tui diff` <= 2 s.
    assert figures["targets"]["cli_cold_run_s"] == "<= 4"
    assert figures["targets"]["cli_cold_diff_s"] == "<= 2"


def test_a_start_without_its_offset_is_refused_in_one_line() -> None:
    """--start is an instant: without its UTC offset it is refused before anything starts."""
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--start", "2027-03-28T00:05:00"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2 and "has no UTC offset" in done.stderr, done.stderr
