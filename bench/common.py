"""Helpers the bench scripts share: the simulator's clock, RSS, medians, step seconds, plain paging, tables."""

from __future__ import annotations

import json
import resource
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.ingest.nightscout import FetchWindow

TIMEZONE = "Europe/Berlin"
SEED = 42
PAGE_SIZE = 10_000
WINDOW_DAYS = 30
HOUR_S = 3600.0
REPO = Path(__file__).resolve().parents[1]


@dataclass
class SimulatorClock:
    """The simulator's 'now': pinned `behind_s` behind real time at start, moved on by `advance`.

    Behind, so that each step of one simulated hour still lies in the past for the engine, whose
    clock is the real one.
    """

    start: float
    behind_s: float
    moved_s: float = 0.0

    def __call__(self) -> float:
        return self.start - self.behind_s + self.moved_s

    def advance(self, seconds: float) -> None:
        self.moved_s += seconds


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak RSS of a process since its exec (VmHWM), in MB.

    Not ru_maxrss: Linux carries the parent's RSS at fork (vfork) into a child's ru_maxrss when it
    execs, so a small child of a big bench process would report the parent's size.
    """
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    if pid == "self":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return float("nan")


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def median(values: Iterable[float]) -> float:
    found = list(values)
    return statistics.median(found) if found else float("nan")


def step_seconds(steps: Iterable[Any]) -> dict[str, float]:
    """Seconds per step name of one recorded run ("model ..." steps summed as "models")."""
    out: dict[str, float] = {}
    for step in steps:
        name = "models" if step.name.startswith("model ") else step.name
        out[name] = out.get(name, 0.0) + (step.seconds or 0.0)
    return out


def fetch_plain(
    client: httpx.Client, url: str, window: FetchWindow, page_size: int = PAGE_SIZE
) -> list[dict[str, Any]]:
    """The dlt source's newest-first paging with nothing but httpx and json: the baseline fetch."""
    entries: list[dict[str, Any]] = []
    lt = window.end_ms
    while True:
        params = {"count": page_size, "find[date][$gte]": window.start_ms, "find[date][$lt]": lt}
        response = client.get(f"{url}/api/v1/entries/sgv.json", params=params)
        response.raise_for_status()
        page = json.loads(response.content)
        if len(page) < page_size:
            entries.extend(page)
            return entries
        oldest = min(entry["date"] for entry in page)
        entries.extend(entry for entry in page if entry["date"] > oldest)
        lt = oldest + 1


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned first column, the others right-aligned, each as wide as its widest cell."""
    table = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    for row in table:
        print(
            "  ".join(
                c.ljust(w) if n == 0 else c.rjust(w) for n, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
