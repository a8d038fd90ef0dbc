"""Daemon figures: idle CPU and RSS over 60 s, and RSS across 100 consecutive hourly runs.

    uv run python bench/daemon.py [--idle-seconds 60] [--runs 100]

Prints a table, then one JSON line. Nothing is asserted: the targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from engine.api.facade import Engine
from engine.config import load_settings
from engine.sim.server import SimulatorServer
from engine.sim.simulator import GlucoseSimulator

HOUR = 3600.0


def idle_daemon(seconds: float, url: str, home: Path) -> tuple[float, float]:
    """Start `phlo-tui --daemon`, let its catch-up run finish, then watch it idle."""
    env = {
        **os.environ,
        "PHLO_HOME": str(home),
        "NIGHTSCOUT_URL": url,
        "PHLO_INITIAL_DAYS": "3",
        "PHLO_MANAGE_POSTGRES": "false",
        "PHLO_CONFIG": str(home / "none.toml"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "phlo_tui.cli", "--daemon"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        with Engine(load_settings(env, home / "none.toml")) as engine:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = engine.list_runs(1)
                if runs and runs[0].finished_at is not None:
                    break
                time.sleep(0.5)
        process = psutil.Process(proc.pid)
        before = process.cpu_times()
        time.sleep(seconds)
        after = process.cpu_times()
        cpu = (after.user + after.system - before.user - before.system) / seconds * 100
        return cpu, process.memory_info().rss / 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def hourly_runs(count: int, home: Path) -> list[tuple[int, float, float]]:
    """`count` hourly runs in one warm engine, the simulator's clock one hour further each time."""
    clock = [time.time() - (count + 2) * HOUR]
    server = SimulatorServer(GlucoseSimulator(seed=42, clock=lambda: clock[0])).start()
    env = {
        "PHLO_HOME": str(home),
        "NIGHTSCOUT_URL": server.url,
        "PHLO_INITIAL_DAYS": "14",
        "PHLO_MANAGE_POSTGRES": "false",
        # Runs are minutes apart in real time: keep the freshness gate from holding them.
        "PHLO_LOOKBACK_MINUTES": "60",
    }
    samples = []
    process = psutil.Process()
    try:
        with Engine(load_settings(env, home / "none.toml")) as engine:
            engine.run_now()
            for index in range(1, count + 1):
                clock[0] += HOUR
                started = time.perf_counter()
                engine.run_now()
                seconds = time.perf_counter() - started
                if index == 1 or index % 10 == 0:
                    samples.append((index, process.memory_info().rss / 1e6, seconds))
    finally:
        server.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(GlucoseSimulator(seed=42)) as server:
        cpu, idle_rss = idle_daemon(args.idle_seconds, server.url, Path(tmp) / "idle")
        samples = hourly_runs(args.runs, Path(tmp) / "hourly")
    print(f"{'figure':45s} {'value':>10s}   target")
    idle_label = f"daemon idle CPU over {args.idle_seconds:.0f} s"
    print(f"{idle_label:45s} {cpu:9.2f}%   < 1 %")
    print(f"{'daemon idle RSS':45s} {idle_rss:8.0f} MB")
    print(f"{'run':>5s} {'RSS MB':>8s} {'run s':>7s}")
    for index, rss, seconds in samples:
        print(f"{index:5d} {rss:8.0f} {seconds:7.3f}")
    first = samples[0][1]
    last = samples[-1][1]
    growth = (last - first) / first * 100
    growth_label = f"RSS growth from run 1 to run {samples[-1][0]}"
    print(f"{growth_label:45s} {growth:9.1f}%   < 10 %")
    print(
        json.dumps(
            {
                "daemon_idle_cpu_pct": round(cpu, 3),
                "daemon_idle_rss_mb": round(idle_rss, 1),
                "rss_first_run_mb": round(first, 1),
                "rss_last_run_mb": round(last, 1),
                "rss_growth_pct": round(growth, 2),
                "hourly_run_s_last": round(samples[-1][2], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
