"""Bench: a year of sgv entries from the simulator via the dlt source and via plain httpx + json."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from engine.ingest.nightscout import (
    DAY_MS,
    FetchWindow,
    NightscoutConfig,
    configure_dlt,
    fetch_window,
    plan_windows,
)
from engine.sim.server import SimulatorServer

if __package__ in (None, ""):
    # Run as `python bench/fetch_baseline.py`: the repository root holds `bench`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PAGE_SIZE, WINDOW_DAYS, fetch_plain

DAYS = 365
ROUNDS = 3


def timed_dlt(config: NightscoutConfig, windows: list[FetchWindow]) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(len(fetch_window(config, window)) for window in windows)
    return time.perf_counter() - started, count


def timed_baseline(url: str, windows: list[FetchWindow]) -> tuple[float, int]:
    started = time.perf_counter()
    with httpx.Client(timeout=30.0) as client:
        count = sum(len(fetch_plain(client, url, window)) for window in windows)
    return time.perf_counter() - started, count


def main() -> None:
    with tempfile.TemporaryDirectory() as home, SimulatorServer() as server:
        configure_dlt(Path(home))
        started = time.perf_counter()
        import dlt.sources.rest_api  # noqa: F401 - timed on its own: paid once per process

        print(f"dlt import: {time.perf_counter() - started:.2f} s")
        until_ms = int(time.time() * 1000)
        windows = plan_windows(until_ms - DAYS * DAY_MS, until_ms, WINDOW_DAYS)
        config = NightscoutConfig(url=server.url, page_size=PAGE_SIZE)
        # Warm-up: the simulator generates each day once and caches it; both sides then read warm.
        timed_baseline(server.url, windows)
        timed_dlt(config, windows)

        dlt_s: list[float] = []
        baseline_s: list[float] = []
        for round_no in range(1, ROUNDS + 1):
            seconds, dlt_count = timed_dlt(config, windows)
            dlt_s.append(seconds)
            seconds, baseline_count = timed_baseline(server.url, windows)
            baseline_s.append(seconds)
            if dlt_count != baseline_count:
                raise SystemExit(f"entry counts differ: dlt {dlt_count}, baseline {baseline_count}")
            print(f"round {round_no}: dlt {dlt_s[-1]:.3f} s, baseline {baseline_s[-1]:.3f} s")

        dlt_median, baseline_median = statistics.median(dlt_s), statistics.median(baseline_s)
        print(f"{DAYS} days, {len(windows)} windows, {dlt_count} entries, page_size {PAGE_SIZE}")
        print(f"dlt source  median {dlt_median:.3f} s")
        print(f"httpx+json  median {baseline_median:.3f} s")
        print(f"ratio dlt/baseline {dlt_median / baseline_median:.2f}")


if __name__ == "__main__":
    main()
