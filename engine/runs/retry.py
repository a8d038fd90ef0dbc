"""Retries as data: a RetryPolicy, the pure delay before each retry, and one loop that applies them."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `max_retries` retries after the first attempt; the n-th waits `delay * backoff**(n-1)`
    seconds, moved by up to ±`jitter` of itself (0.1: ±10 %) so that retries of several callers spread."""

    max_retries: int = 3
    delay: float = 0.5
    backoff: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {self.max_retries}")
        if self.delay < 0:
            raise ValueError(f"delay must be 0 or more seconds, not {self.delay}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be 1 or more, not {self.backoff}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within 0..1, not {self.jitter}")

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def delay_for(self, attempt: int, draw: float = 0.5) -> float:
        """Seconds to wait before retry number `attempt` (1 = the first retry).

        Pure: `draw` in [0, 1) picks the jitter (0.5 is none), so the caller owns the randomness.
        """
        if attempt < 1:
            raise ValueError(f"retries are numbered from 1, not {attempt}")
        base = self.delay * self.backoff ** (attempt - 1)
        return max(0.0, base * (1 + self.jitter * (2 * draw - 1)))


def call_with_retry(
    operation: Callable[[], T],
    policy: RetryPolicy,
    *,
    transient: Callable[[BaseException], bool],
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """Call `operation` until it returns, retrying errors that `transient` accepts per `policy`.

    `on_retry(attempt, seconds, error)` is told before each wait (a caller shows "retrying" with it).
    Re-raises the last error when the retries are used up, and any non-transient error at once.
    """
    attempt = 0
    while True:
        try:
            return operation()
        except Exception as error:
            attempt += 1
            if attempt > policy.max_retries or not transient(error):
                raise
            seconds = policy.delay_for(attempt, draw())
            if on_retry is not None:
                on_retry(attempt, seconds, error)
            sleep(seconds)
