"""The product's clock: one injectable "now" for data time, so a run, a test or the demo can live at any instant.

Two kinds of "now" exist, and they are kept apart on purpose:

- **Data time** is when the person's day is: what "fresh", "today" and "the future" mean. It comes from
  one `Clock` (a callable returning an aware UTC datetime), handed down from `Engine(settings, clock=...)`
  to the pipeline (fetch windows, the freshness gate, validation's "not in the future", `ingested_at`),
  to the reads (`freshness`, `metrics` without `--since`), to the dashboard (status, Overview, Charts,
  the demo's first backfill) and to the built-in demo simulator (what readings exist yet).
- **Process time** is when this process does things, and stays the wall clock: the writer lease and its
  heartbeats (compared across processes), run, step and command stamps in the run store, retry waits,
  the daemon's APScheduler and the dashboard's own schedule, Iceberg snapshot timestamps (pyiceberg stamps
  them) and so snapshot expiry ages. Mixing the two would expire a lease or every snapshot at once as soon
  as data time is days away from the wall clock.

`PHLO_NOW=<ISO instant with offset>` starts data time at that instant, and it then advances in real time,
so the subprocesses a test or a demo starts (CLI runs, the daemon, the dashboard, the simulator) share the
caller's instant. Unset, data time is the wall clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from engine.errors import ConfigError

Clock = Callable[[], datetime]
"""Data time: an aware datetime in UTC."""

NOW_ENV = "PHLO_NOW"


def wall_clock() -> datetime:
    """The wall clock in UTC: process time, and data time when nothing else is asked for."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class StartedClock:
    """Data time that reads `start` when it is made and then advances with the wall clock."""

    start: datetime
    _offset: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_offset", self.start.timestamp() - time.time())

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self._offset, UTC)


def parse_instant(text: str, source: str) -> datetime:
    """An ISO 8601 instant with its offset (or Z), in UTC; ConfigError naming `source` otherwise."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise ConfigError(
            f"{source}: {text!r} is not an ISO 8601 instant", "use for example 2027-03-28T00:05:00+01:00"
        ) from e
    if instant.tzinfo is None:
        raise ConfigError(f"{source}: {text!r} has no UTC offset", "add one, for example +01:00 or Z")
    return instant.astimezone(UTC)


def clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    """Data time for this process: from $PHLO_NOW when set, else the wall clock. Raises ConfigError."""
    env = os.environ if env is None else env
    text = env.get(NOW_ENV, "")
    return StartedClock(parse_instant(text, NOW_ENV)) if text else wall_clock


def epoch_seconds(clock: Clock) -> Callable[[], float]:
    """The same clock as seconds since the epoch: what the simulator reads."""
    return lambda: clock().timestamp()
