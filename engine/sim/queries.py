"""Nightscout's answers: its query semantics, as API v1 and v3 read query parameters (JavaScript's
parseInt, text bounds on created_at, v3 timestamps), and the status document."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from engine.sim.trace import DEFAULT_COUNT, MIN_TIMESTAMP_MS, TYPED_KINDS, iso_ms

if TYPE_CHECKING:
    from engine.sim.simulator import GlucoseSimulator

EntryKind = Literal["all", "sgv", "mbg", "cal"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def leading_int(text: str) -> int | None:
    """Parse like JavaScript's parseInt, which Nightscout applies to numeric query fields."""
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else None


def query_entries(
    simulator: GlucoseSimulator, query: dict[str, str], path_kind: str | None
) -> list[dict[str, Any]]:
    """Apply Nightscout's entries query semantics to the simulator."""
    requested_type = query.get("find[type]")
    if path_kind is not None and requested_type is not None and requested_type != path_kind:
        return []
    requested = path_kind or requested_type
    kind: EntryKind = "all"
    if requested is not None:
        if requested not in TYPED_KINDS:
            return []
        kind = TYPED_KINDS[requested]
    bounds: dict[str, int | None] = {}
    for operator in ("gte", "gt", "lt", "lte"):
        raw = query.get(f"find[date][${operator}]")
        value = None if raw is None else leading_int(raw)
        if raw is not None and value is None:
            # MongoDB compares a NaN bound with no stored date, so nothing matches.
            return []
        bounds[operator] = value
    count = leading_int(query.get("count", ""))
    return simulator.entries(
        kind=kind,
        gte=bounds["gte"],
        gt=bounds["gt"],
        lt=bounds["lt"],
        lte=bounds["lte"],
        count=DEFAULT_COUNT if count is None else count,
    )


def query_treatments(simulator: GlucoseSimulator, query: dict[str, str]) -> list[dict[str, Any]]:
    """Apply Nightscout's treatments query semantics: `find[created_at][...]` bounds are text."""
    count = leading_int(query.get("count", ""))
    return simulator.treatments(
        gte=query.get("find[created_at][$gte]"),
        gt=query.get("find[created_at][$gt]"),
        lt=query.get("find[created_at][$lt]"),
        lte=query.get("find[created_at][$lte]"),
        count=DEFAULT_COUNT if count is None else count,
    )


def v3_timestamp(text: str) -> int | None:
    """API v3's reading of a timestamp parameter (lib/api3/shared/dateTools.js): epoch ms, or
    seconds when that would lie before 2000, or ISO 8601; None (HTTP 400) before 2000-01-01."""
    try:
        number = float(text)
    except ValueError:
        ms = instant_ms(unquote(text))
    else:
        ms = int(number) if number >= MIN_TIMESTAMP_MS else int(number * 1000)
    return ms if ms is not None and ms >= MIN_TIMESTAMP_MS else None


def instant_ms(text: str) -> int | None:
    """An ISO 8601 date or date-time as epoch ms; without a zone it is read as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return int(moment.timestamp() * 1000)


def bound_text(value: int | str) -> str | None:
    """A `created_at` bound as Nightscout hands it to MongoDB: a number's text as sent, anything
    else as UTC ISO text with milliseconds (moment.parseZone(...).toISOString()); None when the
    site would refuse it as no date. An instant (ms) is what a bound's text means."""
    if isinstance(value, int):
        return iso_ms(value)
    try:
        float(value)
    except ValueError:
        pass
    else:
        return value  # JavaScript's isNaN(value) is false: the site leaves it alone
    # "some clients don't escape the plus": the site turns the first space back into one.
    ms = instant_ms(value.replace(" ", "+", 1))
    return None if ms is None else iso_ms(ms)


TEXT_COMPARISONS: dict[str, Callable[[str, str], bool]] = {
    "gte": lambda text, bound: text >= bound,
    "gt": lambda text, bound: text > bound,
    "lt": lambda text, bound: text < bound,
    "lte": lambda text, bound: text <= bound,
}


def status_document(now: float) -> dict[str, Any]:
    """A status.json shaped like cgm-remote-monitor 15.0.2 with a typical single-user setup."""
    now_ms = int(now * 1000)
    return {
        "status": "ok",
        "name": "nightscout",
        "version": "15.0.2",
        "serverTime": iso_ms(now_ms),
        "serverTimeEpoch": now_ms,
        "apiEnabled": True,
        "careportalEnabled": True,
        "boluscalcEnabled": True,
        "settings": {
            "units": "mg/dl",
            "timeFormat": 24,
            "dayStart": 7,
            "dayEnd": 21,
            "nightMode": False,
            "editMode": True,
            "showRawbg": "never",
            "customTitle": "Nightscout",
            "theme": "colors",
            "alarmUrgentHigh": True,
            "alarmHigh": True,
            "alarmLow": True,
            "alarmUrgentLow": True,
            "alarmTimeagoWarn": True,
            "alarmTimeagoWarnMins": 15,
            "alarmTimeagoUrgent": True,
            "alarmTimeagoUrgentMins": 30,
            "language": "en",
            "scaleY": "log",
            "showPlugins": "dbsize delta direction upbat",
            "enable": ["careportal", "boluscalc", "food", "bwp", "cage", "sage", "iage", "iob"],
            "thresholds": {"bgHigh": 260, "bgTargetTop": 180, "bgTargetBottom": 70, "bgLow": 55},
            "DEFAULT_FEATURES": ["bgnow", "delta", "direction", "timeago", "devicestatus", "upbat"],
            "authDefaultRoles": "readable",
        },
        "extendedSettings": {"devicestatus": {"advanced": True}},
        "authorized": None,
        "runtimeState": "loaded",
    }
