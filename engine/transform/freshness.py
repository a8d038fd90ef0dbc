"""How old the newest stored reading is, and what that means: shown by the dashboard, alerted by the daemon."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Freshness:
    """How old the newest reading is, and what that means."""

    level: str  # ok | warning | error | unknown
    message: str
    newest: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "message": self.message,
            "newest_reading": self.newest.isoformat() if self.newest else None,
        }


def freshness(newest_ms: int | None, now: datetime, warning_after: timedelta) -> Freshness:
    """Pure: the alert level for a newest reading at `newest_ms` (epoch ms) seen at `now`."""
    if newest_ms is None:
        return Freshness("unknown", "no readings yet", None)
    newest = datetime.fromtimestamp(newest_ms / 1000, UTC)
    age = now - newest
    minutes = int(age.total_seconds() // 60)
    if age > timedelta(hours=24):
        return Freshness(
            "error",
            f"no new glucose reading for {minutes // 60} h: is the sensor or the uploader down?",
            newest,
        )
    if age > warning_after:
        return Freshness(
            "warning",
            f"no new glucose reading for {minutes} min (a sensor change or the uploader down?)",
            newest,
        )
    return Freshness("ok", f"newest reading {minutes} min ago", newest)
