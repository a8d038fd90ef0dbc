"""The simulator's closed-loop uploaders: the treatments AndroidAPS and Loop upload for a day's plan,
in their payload shapes and conventions (docs/closed-loop.md), duplicates and deletions included."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import numpy as np

Uploader = Literal["aaps", "loop"]
UPLOADERS: tuple[Uploader, ...] = ("aaps", "loop")

TAG_CLOSED_LOOP = 18  # a default_rng stream per local day, apart from the mixed uploaders' streams
DELETED_AT = "_deleted_ms"
"""Private key of a simulated document: when the person deletes it through API v3 (epoch ms), after
which the site serves it with isValid false; never served itself."""
REMOVED_AT = "_removed_ms"
"""Likewise, deleted through API v1 (`DELETE /api/v1/treatments/<_id>`): the site no longer has it."""
EDITED_AT = "_edited_ms"
"""When the person edits the document through API v3 (epoch ms): from then on the site serves it
with the fields of `EDIT` and that srvModified."""
EDIT = "_edit"
PRIVATE_KEYS = (DELETED_AT, REMOVED_AT, EDITED_AT, EDIT)
V3_KEYS = ("identifier", "srvCreated", "srvModified")
IDENTIFIERS = uuid.UUID("5b0f7124-475f-5db0-824c-a73c5eea0975")
"""Namespace of the simulated AndroidAPS identifiers (a uuid5 of the _id: no draw from the day's
stream, so adding them moved no other document)."""

CARBS_PER_UNIT = 10.0
TEMP_BASAL_EVERY_MIN = 30
SMB_AFTER_MEAL = (2, 6)  # how many automatic boluses follow a meal
REUPLOAD_RATE = 0.1  # a pump record uploaded again under a new _id
SKEWED_REUPLOAD_SHARE = 0.5  # of those, the share stamped minutes off (a phone catching up)
DELETED_ENTRY_RATE = 0.002  # readings the person deleted (compression lows, sensor errors)
PUMP_TYPE, PUMP_SERIAL = "OMNIPOD_DASH", "4241A0F3"
LOOP_DEVICE = "loop://iPhone"
DELETED_AFTER_S = 3 * 86_400  # an AndroidAPS mistake is deleted three days after it was logged
EDITED_AFTER_S = 3 * 86_400  # hypo carbs corrected three days after they were logged


class DayPlan(Protocol):
    @property
    def meals(self) -> tuple[tuple[float, float, bool], ...]: ...

    @property
    def lows(self) -> tuple[float, ...]: ...


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, ZoneInfo("UTC"))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _units(units: float) -> float:
    return round(round(units * 20) / 20, 2)


class _Day:
    """The documents of one local day as (upload ms, document)."""

    def __init__(self, rng: np.random.Generator, *, v3: bool = False) -> None:
        self.rng = rng
        self.v3 = v3
        """Uploaded through API v3 (AndroidAPS's NSClient v3): each document has an identifier and
        the srvCreated / srvModified the site stamps."""
        self.records: list[tuple[int, dict[str, Any]]] = []

    def object_id(self, seconds: float) -> str:
        return f"{int(seconds):08x}{int(self.rng.integers(0, 2**63)):016x}"

    def add(self, seconds: float, doc: dict[str, Any], *, uploaded: float | None = None) -> dict[str, Any]:
        uploaded_ms = int((uploaded or seconds) * 1000)
        full = {"_id": self.object_id(uploaded or seconds), "created_at": _iso(seconds), **doc}
        if self.v3:
            identifier = str(uuid.uuid5(IDENTIFIERS, full["_id"]))
            full.update(identifier=identifier, srvCreated=uploaded_ms, srvModified=uploaded_ms)
        self.records.append((uploaded_ms, full))
        return full

    def reupload(self, doc: dict[str, Any]) -> None:
        """The same record under a new _id: at once after a restore, or stamped minutes off."""
        seconds = datetime.fromisoformat(doc["created_at"]).timestamp()
        skew = float(self.rng.uniform(120, 300)) if self.rng.random() < SKEWED_REUPLOAD_SHARE else 0.0
        again = seconds + skew + 3600  # uploaded an hour later
        copy = {
            key: value
            for key, value in doc.items()
            if key not in ("_id", "created_at", *PRIVATE_KEYS, *V3_KEYS)
        }
        if "date" in copy:
            copy["date"] = int((seconds + skew) * 1000)
        self.add(seconds + skew, copy, uploaded=again)


def closed_loop_treatments(
    plan: DayPlan, ordinal: int, seed: int, tz: ZoneInfo, uploader: Uploader
) -> tuple[tuple[int, dict[str, Any]], ...]:
    """The treatments `uploader` uploads for the local day `ordinal` of `plan`, as (upload ms, doc)."""
    rng = np.random.default_rng([seed, TAG_CLOSED_LOOP, ordinal, UPLOADERS.index(uploader)])
    day = _Day(rng, v3=uploader == "aaps")
    write: Callable[[_Day, DayPlan, float, int], None] = _aaps_day if uploader == "aaps" else _loop_day
    start = datetime.combine(date.fromordinal(ordinal), datetime.min.time(), tz).timestamp()
    write(day, plan, start, ordinal)
    return tuple(day.records)


def _meal_dose(day: _Day, rise: float, over_bolus: bool) -> tuple[int, float]:
    carbs = round(rise * day.rng.uniform(0.35, 0.5))
    return carbs, _units(carbs / CARBS_PER_UNIT * (1.35 if over_bolus else 1.0) * day.rng.uniform(0.9, 1.1))


def _smb_times(day: _Day, onset: float) -> Iterable[float]:
    at = onset + float(day.rng.uniform(15, 30)) * 60
    for _ in range(int(day.rng.integers(*SMB_AFTER_MEAL))):
        yield at
        at += float(day.rng.choice([5, 10, 15])) * 60


def _aaps_day(day: _Day, plan: DayPlan, start: float, ordinal: int) -> None:
    """AndroidAPS (NSClient): the bolus calculation as a `Bolus Wizard`, the carbs and the bolus
    as their own records, SMBs as `Correction Bolus` with type SMB, every pump record with its
    pump composite key (aaps-patterns.json of Nightscout's fixtures)."""
    pump_id = ordinal * 1000

    def pump(fields: dict[str, Any]) -> dict[str, Any]:
        nonlocal pump_id
        pump_id += 1
        return {**fields, "pumpId": pump_id, "pumpType": PUMP_TYPE, "pumpSerial": PUMP_SERIAL}

    def aaps(seconds: float, fields: dict[str, Any]) -> dict[str, Any]:
        return day.add(seconds, {**fields, "date": int(seconds * 1000), "isValid": True, "app": "AAPS"})

    pumped: list[dict[str, Any]] = []
    for onset, rise, over_bolus in plan.meals:
        carbs, units = _meal_dose(day, rise, over_bolus)
        at = onset - float(day.rng.uniform(5, 20)) * 60
        calculation = {"carbs": carbs, "insulin": units, "glucose": 130, "glucoseType": "Sensor"}
        aaps(
            at, {"eventType": "Bolus Wizard", **calculation, "bolusCalculatorResult": json.dumps(calculation)}
        )
        aaps(at, {"eventType": "Carb Correction", "carbs": carbs})
        bolus = {"eventType": "Meal Bolus", "insulin": units, "type": "NORMAL", "isSMB": False}
        pumped.append(aaps(at + 12, pump(bolus)))
        for smb_at in _smb_times(day, onset):
            smb = {"eventType": "Correction Bolus", "insulin": _units(day.rng.uniform(0.1, 0.6))}
            pumped.append(aaps(smb_at, pump({**smb, "type": "SMB", "isSMB": True})))
    for slot in range(24 * 60 // TEMP_BASAL_EVERY_MIN):
        rate = round(float(day.rng.uniform(0.0, 2.0)), 2)
        basal = {"eventType": "Temp Basal", "duration": TEMP_BASAL_EVERY_MIN, "rate": rate, "absolute": rate}
        aaps(start + slot * TEMP_BASAL_EVERY_MIN * 60, pump({**basal, "enteredBy": "openaps://AndroidAPS"}))
    for doc in pumped:
        if day.rng.random() < REUPLOAD_RATE:
            day.reupload(doc)
    if ordinal % 3 == 0:  # a bolus logged by mistake, deleted when the person reviews the days after
        at = start + float(day.rng.uniform(9, 21)) * 3600
        mistake = aaps(
            at, pump({"eventType": "Correction Bolus", "insulin": 2.0, "type": "NORMAL", "isSMB": False})
        )
        mistake[DELETED_AT] = int((at + DELETED_AFTER_S) * 1000)
    if ordinal % 3 == 1:  # hypo carbs logged as 20 g, corrected to 15 g in AndroidAPS days later
        at = plan.lows[0] - 300 if plan.lows else start + 15 * 3600
        hypo = aaps(at, {"eventType": "Carb Correction", "carbs": 20})
        hypo.update({EDITED_AT: int((at + EDITED_AFTER_S) * 1000), EDIT: {"carbs": 15}})


def _loop_day(day: _Day, plan: DayPlan, start: float, ordinal: int) -> None:
    """Loop (NightscoutKit): carbs as `Carb Correction`, every bolus as `Correction Bolus` with
    `automatic` telling the loop's from the person's, temp basals marked automatic, each record
    with its syncIdentifier (nightscoutkit-treatments.js); no bolus calculation records."""

    def loop(seconds: float, fields: dict[str, Any]) -> dict[str, Any]:
        sync = f"{int(day.rng.integers(0, 2**63)):016x}-{ordinal}"
        stamp = _iso(seconds)
        return day.add(
            seconds, {**fields, "timestamp": stamp, "enteredBy": LOOP_DEVICE, "syncIdentifier": sync}
        )

    def bolus(seconds: float, units: float, automatic: bool) -> dict[str, Any]:
        fields = {"eventType": "Correction Bolus", "type": "normal", "insulin": units, "programmed": units}
        return loop(seconds, {**fields, "duration": 0, "automatic": automatic})

    synced: list[dict[str, Any]] = []
    for onset, rise, over_bolus in plan.meals:
        carbs, units = _meal_dose(day, rise, over_bolus)
        at = onset - float(day.rng.uniform(5, 20)) * 60
        synced.append(loop(at, {"eventType": "Carb Correction", "carbs": carbs, "absorptionTime": 180}))
        synced.append(bolus(at + 30, units, automatic=False))
        for auto_at in _smb_times(day, onset):
            synced.append(bolus(auto_at, _units(day.rng.uniform(0.05, 0.5)), automatic=True))
    for nadir in plan.lows:
        synced.append(loop(nadir - 300, {"eventType": "Carb Correction", "carbs": 15, "absorptionTime": 60}))
    for slot in range(24 * 60 // TEMP_BASAL_EVERY_MIN):
        rate = round(float(day.rng.uniform(0.0, 2.0)), 2)
        basal = {"eventType": "Temp Basal", "temp": "absolute", "rate": rate, "absolute": rate}
        loop(
            start + slot * TEMP_BASAL_EVERY_MIN * 60,
            {**basal, "duration": TEMP_BASAL_EVERY_MIN, "automatic": True},
        )
    for doc in synced:
        if day.rng.random() < REUPLOAD_RATE:
            day.reupload(doc)
    if ordinal % 3 == 0:  # carbs entered by mistake, deleted in Loop 20 minutes later (through v1)
        at = start + float(day.rng.uniform(9, 21)) * 3600
        mistake = loop(at, {"eventType": "Carb Correction", "carbs": 30, "absorptionTime": 180})
        mistake[REMOVED_AT] = int((at + 1200) * 1000)


def as_served(doc: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
    """A simulated document as the site serves it at `now_ms`: once deleted through API v3, with
    isValid false and srvModified the deletion (as Nightscout keeps it); once edited through API
    v3, with the edit and its srvModified; once deleted through API v1, not at all."""
    served = dict(doc)
    deleted_ms = served.pop(DELETED_AT, None)
    removed_ms = served.pop(REMOVED_AT, None)
    edited_ms = served.pop(EDITED_AT, None)
    edit = served.pop(EDIT, None)
    if removed_ms is not None and now_ms >= removed_ms:
        return None
    if edited_ms is not None and now_ms >= edited_ms:
        served.update(edit, srvModified=edited_ms)
    if deleted_ms is not None and now_ms >= deleted_ms:
        served.update(isValid=False, srvModified=deleted_ms)
    return served


def mark_deleted_entries(entries: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Entries with the few readings the person deleted served with isValid false, deleted (through
    API v3, so with a srvModified) as they came."""
    for entry in entries:
        date_ms = entry.get("date")
        if (
            isinstance(date_ms, int)
            and (date_ms // 1000 * 2654435761 + seed) % 100_000 < DELETED_ENTRY_RATE * 100_000
        ):
            entry.update(isValid=False, srvModified=date_ms)
    return entries


def as_v3(document: dict[str, Any]) -> dict[str, Any]:
    """A document as API v3 serves it: no `_id`, its `identifier` the `_id`'s hex when it has none
    (lib/api3/storage/mongoCollection/utils.js, normalizeDoc)."""
    served = {key: value for key, value in document.items() if key != "_id"}
    served.setdefault("identifier", document["_id"])
    return served
