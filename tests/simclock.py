"""The suite's data time: one start instant for every simulated clock, and a settable clock for the ingest tests.

`PHLO_TEST_START=<ISO instant>` (or `now`) moves every simulated clock to that instant, for example
`PHLO_TEST_START=2027-03-28T00:05:00+01:00 ./scripts/test`. It is read once, at import, because
tests/conftest.py removes every PHLO_* variable before each test; conftest then gives each test
`PHLO_NOW=START`, so engines, simulators and the subprocesses a test starts (CLI, daemon, dashboard)
share that instant (engine.clock).

Without it the suite runs at PINNED, a fixed instant: a failure then repeats on every machine and at every
hour, and the engine's data time sits months away from the wall clock in every test, which is what keeps
data time and process time (leases, snapshot expiry) apart. `PHLO_TEST_START=now` runs at the current time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.clock import parse_instant

if TYPE_CHECKING:
    from engine.clock import Clock as EngineClock
    from engine.sim.simulator import GlucoseSimulator

HOUR = 3600.0

PINNED = "2026-05-13T14:20:00+00:00"
"""A Wednesday afternoon in UTC (morning in New York, night in Auckland), with readings in the hours before
for the seeds the tests use, away from month ends and DST changes."""

START_ENV = "PHLO_TEST_START"


def _start() -> datetime:
    # Taken out of the environment: the product refuses PHLO_* variables it does not know, and module
    # fixtures start subprocesses with os.environ before tests/conftest.py cleans it.
    text = os.environ.pop(START_ENV, "").strip() or PINNED
    return datetime.now(UTC) if text == "now" else parse_instant(text, START_ENV)


START: datetime = _start()
"""The suite's data time: every simulated clock starts here."""
START_S: float = START.timestamp()


class Clock:
    """The simulator's and the engine's 'now', at START (or `behind_s` before it) until a test moves it.

    Call it for epoch seconds (GlucoseSimulator's clock); `utc` is the same instant for Engine(clock=...).
    """

    def __init__(self, behind_s: float = 0.0) -> None:
        self.now = START_S - behind_s

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def follow(simulator: GlucoseSimulator) -> EngineClock:
    """Data time that reads the simulator's clock, for Engine(clock=...): the engine lives where its site does."""
    return lambda: datetime.fromtimestamp(simulator.clock(), UTC)
