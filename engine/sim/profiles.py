"""The simulator's `/api/v1/profile.json`: the profile documents a closed loop uploads, in
Nightscout's shape (docs/closed-loop.md, "Total daily insulin from basal").

A document is `{_id, defaultProfile, startDate, mills, units, store: {name: {basal, timezone,
...}}}`, listed newest first, `count` of them (10 by default: cgm-remote-monitor's
`PROFILES_DEFAULT_COUNT`). AndroidAPS uploads its profile store from NSClient (`ProfileStore`:
`dia`, `carbratio`, `sens`, `basal`, `target_low`, `target_high`, `timezone`, `units`); Loop
uploads a `Default` profile with its `loopSettings` (NightscoutKit `ProfileSet`). A site without
a closed loop serves an empty list.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.sim.server import SimulatorServer
    from engine.sim.simulator import GlucoseSimulator

PROFILE_PATH = re.compile(r"/api/v1/profiles?(?:\.json)?/?")
DEFAULT_COUNT = 10

BASAL_SCHEDULE: tuple[tuple[str, float], ...] = (
    ("00:00", 0.8),
    ("03:00", 1.0),
    ("07:00", 0.9),
    ("12:00", 0.7),
    ("18:00", 0.85),
    ("22:00", 0.75),
)
"""The simulated person's scheduled basal, U/h from each local time on: a dawn rise, less at noon."""
OLDER_SCHEDULE: tuple[tuple[str, float], ...] = (("00:00", 0.9),)
"""The flat schedule in force before the current one."""
STARTS = ("2015-01-01T00:00:00.000Z", "2019-06-01T00:00:00.000Z")
"""When the older and the current profile came into force: before any simulated day a test reads."""


def _entries(schedule: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    entries = []
    for time, value in schedule:
        hours, minutes = (int(part) for part in time.split(":"))
        entries.append({"time": time, "value": value, "timeAsSeconds": hours * 3600 + minutes * 60})
    return entries


def _profile(schedule: tuple[tuple[str, float], ...], timezone: str) -> dict[str, Any]:
    return {
        "dia": 5,
        "carbratio": [{"time": "00:00", "value": 10, "timeAsSeconds": 0}],
        "sens": [{"time": "00:00", "value": 50, "timeAsSeconds": 0}],
        "basal": _entries(schedule),
        "target_low": [{"time": "00:00", "value": 100, "timeAsSeconds": 0}],
        "target_high": [{"time": "00:00", "value": 120, "timeAsSeconds": 0}],
        "timezone": timezone,
        "units": "mg/dl",
    }


def profile_documents(simulator: GlucoseSimulator) -> list[dict[str, Any]]:
    """Every profile document the simulated site holds, newest first."""
    if simulator.uploader is None:
        return []
    timezone = str(simulator.tz)
    name = "LocalProfile" if simulator.uploader == "aaps" else "Default"
    documents = []
    for index, (start, schedule) in enumerate(zip(STARTS, (OLDER_SCHEDULE, BASAL_SCHEDULE), strict=True)):
        document: dict[str, Any] = {
            "_id": f"5d{index:022x}",
            "defaultProfile": name,
            "startDate": start,
            "created_at": start,
            "units": "mg/dl",
            "store": {name: _profile(schedule, timezone)},
        }
        if simulator.uploader == "aaps":
            document["enteredBy"] = "AndroidAPS"
        else:
            document.update(
                enteredBy="Loop", loopSettings={"dosingEnabled": True, "maximumBasalRatePerHour": 3}
            )
        documents.append(document)
    return documents[::-1]


def profile_response(
    server: SimulatorServer, path: str, query: dict[str, str], headers: dict[str, str]
) -> tuple[int, Any] | None:
    """The status and JSON body for a profile request, or None when `path` is not one."""
    if PROFILE_PATH.fullmatch(path) is None:
        return None
    if not server._authorized(query, headers):
        return 401, {"status": 401, "message": "Unauthorized"}
    try:
        count = int(query.get("count", DEFAULT_COUNT))
    except ValueError:
        count = DEFAULT_COUNT
    return 200, profile_documents(server.simulator)[: max(count, 0)]
