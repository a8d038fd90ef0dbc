"""A settable clock for the simulator, shared by the ingest tests."""

from __future__ import annotations

import time

HOUR = 3600.0


class Clock:
    """The simulator's 'now', pinned two hours behind the real clock so it can be moved forward."""

    def __init__(self) -> None:
        self.now = time.time() - 2 * HOUR

    def __call__(self) -> float:
        return self.now
