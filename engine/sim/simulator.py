"""The simulated Nightscout site's data: the trace's entries and the treatments behind it
(boluses before its meal rises, corrections, carbs for its lows, basal changes), queried with
Nightscout's semantics, as API v1 and API v3's history serve them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from engine.clock import clock_from_env, epoch_seconds
from engine.sim.loop import (
    DELETED_AFTER_S,
    EDITED_AFTER_S,
    Uploader,
    as_served,
    as_v3,
    closed_loop_treatments,
    mark_deleted_entries,
)
from engine.sim.queries import TEXT_COMPARISONS, bound_text, instant_ms
from engine.sim.trace import (
    DAY_MS,
    DEFAULT_COUNT,
    EPOCH_ORDINAL,
    HISTORY_LIMIT,
    HISTORY_START_MS,
    IMPLICIT_WINDOW_MS,
    TAG_LATE_UPLOADS,
    TAG_TREATMENT_COPIES,
    TAG_TREATMENTS,
    TraceModel,
    iso_ms,
    pump_units,
)

EntryKind = Literal["all", "sgv", "mbg", "cal"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# Treatments: an insulin-to-carb ratio, the share of values logged as strings, and how often a
# day holds a record a real site would hold by mistake (negative insulin, absurd carbs, no date).
CARBS_PER_UNIT = 10.0
STRING_VALUE_RATE = 0.1
BAD_TREATMENT_EVERY_DAYS = 5  # so any 6 whole days hold one
ENTERED_BY = ("xdrip", "careportal", "AndroidAPS")
# A phone that was offline uploads its treatments hours later, in its own local time: with its
# offset, and half the time (an old uploader) with a space where ISO 8601 puts the `T`.
LATE_UPLOAD_RATE = 0.05
LATE_UPLOAD_HOURS = (1.0, 8.0)
# A pump uploader beside the phone app sends some boluses and carbs a second time: its own _id,
# created_at a few seconds later in UTC, the same doses.
TREATMENT_COPY_RATE = 0.08
COPY_UPLOADER = "openaps://medtronic/722"


class GlucoseSimulator(TraceModel):
    """A deterministic T1D-like CGM trace and its treatments: every document is a pure function of
    seed, tz and time."""

    def __init__(
        self,
        seed: int = 42,
        tz: str = "UTC",
        clock: Callable[[], float] | None = None,
        uploader: Uploader | None = None,
    ) -> None:
        """`clock` gives "now" in epoch seconds: entries after it do not exist yet. Default: data time
        ($PHLO_NOW or the wall clock, engine.clock), so a simulator in a subprocess shares its caller's.
        `uploader` makes the treatments those of one closed loop (engine/sim/loop.py), and
        deletes a few readings; None serves the mixed uploaders of a site without one."""
        super().__init__(seed, tz)
        self.clock = clock if clock is not None else epoch_seconds(clock_from_env())
        self.uploader = uploader
        self._treatments = lru_cache(maxsize=4096)(
            self._generate_treatments if uploader is None else self._closed_loop_treatments
        )

    def entries(
        self,
        *,
        kind: EntryKind = "all",
        gte: int | None = None,
        gt: int | None = None,
        lt: int | None = None,
        lte: int | None = None,
        count: int = DEFAULT_COUNT,
    ) -> list[dict[str, Any]]:
        """Entries as Nightscout returns them, newest first.

        Without any date bound only the last 4 days are searched (Nightscout's implicit filter);
        entries after the clock's "now" do not exist yet. `count <= 0` means no limit, as a
        MongoDB limit of 0 does.
        """
        low, high = self._bounds(gte, gt, lt, lte)
        found = self._select(kind, low, high, count)
        return found if self.uploader is None else mark_deleted_entries(found, self.seed)

    def _bounds(self, gte: int | None, gt: int | None, lt: int | None, lte: int | None) -> tuple[int, int]:
        """The inclusive [low, high] instants (ms) a find[...] filter selects, up to the clock's now;
        with no bound at all, only the last 4 days (Nightscout's implicit filter)."""
        now_ms = int(self.clock() * 1000)
        low, high = HISTORY_START_MS, now_ms
        if gte is None and gt is None and lt is None and lte is None:
            low = max(low, now_ms - IMPLICIT_WINDOW_MS)
        if gte is not None:
            low = max(low, gte)
        if gt is not None:
            low = max(low, gt + 1)
        if lt is not None:
            high = min(high, lt - 1)
        if lte is not None:
            high = min(high, lte)
        return low, high

    def treatments(
        self,
        *,
        gte: int | str | None = None,
        gt: int | str | None = None,
        lt: int | str | None = None,
        lte: int | str | None = None,
        count: int = DEFAULT_COUNT,
    ) -> list[dict[str, Any]]:
        """Treatments as Nightscout returns them: bounds on `created_at` compared as text with the
        stored strings, as MongoDB does, and the greatest string first (`sort: {created_at: -1}`).

        A bound is an instant (ms) or ISO text; Nightscout rewrites either into UTC ISO text with
        milliseconds (`lib/server/query.js`), which then meets stored strings of every offset and
        form: `04:30:00-05:00` (09:30Z) sorts before `09:00:00.000Z`. Without any bound the site
        adds `$gte` 4 days before now. A treatment exists once uploaded (its `_id` holds the upload
        second, as a real ObjectId does); `count <= 0` means no limit. A bound that is no date
        matches nothing.
        """
        now_ms = int(self.clock() * 1000)
        bounds = {"gte": gte, "gt": gt, "lt": lt, "lte": lte}
        if all(value is None for value in bounds.values()):
            bounds["gte"] = now_ms - IMPLICIT_WINDOW_MS
        given = {op: bound_text(value) for op, value in bounds.items() if value is not None}
        texts = {op: text for op, text in given.items() if text is not None}
        if len(texts) < len(given):
            return []
        # A stored string sorts within two days of its instant (offsets, a space for the `T`).
        instants = {op: instant_ms(text) for op, text in texts.items()}
        low = max(
            [HISTORY_START_MS]
            + [ms - 2 * DAY_MS for op, ms in instants.items() if op in ("gte", "gt") and ms is not None]
        )
        high = min(
            [now_ms]
            + [ms + 2 * DAY_MS for op, ms in instants.items() if op in ("lt", "lte") and ms is not None]
        )
        if high < low:
            return []
        first = EPOCH_ORDINAL + low // DAY_MS - 1
        last = EPOCH_ORDINAL + high // DAY_MS + 1

        def selected(text: object) -> bool:
            # MongoDB compares a string bound with strings only: a missing created_at never matches.
            return isinstance(text, str) and all(
                TEXT_COMPARISONS[op](text, bound) for op, bound in texts.items()
            )

        served = (
            as_served(doc, now_ms)
            for ordinal in range(last, first - 1, -1)
            for uploaded_ms, doc in self._treatments(ordinal)
            if uploaded_ms <= now_ms and selected(doc.get("created_at"))
        )
        found = [doc for doc in served if doc is not None]
        found.sort(key=lambda doc: (doc["created_at"], doc["_id"]), reverse=True)
        limit = count if count > 0 else len(found)
        return found[:limit]

    def history(
        self, collection: str, last_modified: int, limit: int = HISTORY_LIMIT
    ) -> list[dict[str, Any]]:
        """API v3's history of `collection` (entries or treatments): the documents whose srvModified
        is after `last_modified` (epoch ms) and not after now, the oldest change first, at most
        `limit`, as API v3 serves them. Only documents written or changed through API v3 have a
        srvModified: the closed loop's AndroidAPS uploads and the readings the person deleted."""
        now_ms = int(self.clock() * 1000)
        changed: list[dict[str, Any]] = []
        if collection == "treatments":
            # A document is changed at most this long after the day it belongs to.
            reach = max(DELETED_AFTER_S, EDITED_AFTER_S) * 1000 + 2 * DAY_MS
            first = EPOCH_ORDINAL + max(last_modified - reach, HISTORY_START_MS) // DAY_MS
            for ordinal in range(first, EPOCH_ORDINAL + now_ms // DAY_MS + 2):
                for uploaded_ms, doc in self._treatments(ordinal):
                    served = as_served(doc, now_ms) if uploaded_ms <= now_ms else None
                    modified = served.get("srvModified") if served else None
                    if served and isinstance(modified, int) and last_modified < modified <= now_ms:
                        changed.append(served)
        elif collection == "entries" and self.uploader is not None:
            # A deleted reading's srvModified is its date: read forward a few days at a time.
            low = max(last_modified + 1, HISTORY_START_MS)
            while low <= now_ms and len(changed) < limit:
                high = min(low + 7 * DAY_MS, now_ms + 1)
                found = mark_deleted_entries(self._select("sgv", low, high - 1, 0), self.seed)
                changed.extend(
                    sorted((e for e in found if e.get("isValid") is False), key=lambda e: e["date"])
                )
                low = high
        changed.sort(key=lambda doc: (doc["srvModified"], doc["_id"]))
        return [as_v3(doc) for doc in changed[:limit]]

    def export(self, since_ms: int, until_ms: int, kind: EntryKind = "all") -> list[dict[str, Any]]:
        """Every entry with since_ms <= date < until_ms (and not after now), newest first."""
        return self.entries(kind=kind, gte=since_ms, lt=until_ms, count=0)

    def _generate_treatments(self, ordinal: int) -> tuple[tuple[int, dict[str, Any]], ...]:
        """The treatments logged on one local day as (upload ms, document), from the day's plan."""
        plan = self._plan(ordinal)
        rng = np.random.default_rng([self._seed64, TAG_TREATMENTS, ordinal])
        late = np.random.default_rng([self._seed64, TAG_LATE_UPLOADS, ordinal])
        copies = np.random.default_rng([self._seed64, TAG_TREATMENT_COPIES, ordinal])
        day = date.fromordinal(ordinal)
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        records: list[tuple[int, dict[str, Any]]] = []

        def add(at_s: float, fields: dict[str, Any], *, faulty: bool = False) -> None:
            seconds = int(at_s)
            # Uploaders disagree on the form: millis or not, Z or the phone's offset.
            form = int(rng.integers(0, 4))
            moment = datetime.fromtimestamp(seconds, self.tz)
            if form == 0:
                created = iso_ms(seconds * 1000)
            elif form == 1:
                created = iso_ms(seconds * 1000).replace(".000Z", "Z")
            elif form == 2:
                created = moment.isoformat()
            else:
                created = moment.astimezone(ZoneInfo("UTC")).isoformat()
            uploaded = seconds
            if late.random() < LATE_UPLOAD_RATE:
                uploaded += int(late.uniform(*LATE_UPLOAD_HOURS) * 3600)
                created = moment.isoformat(sep=" " if late.random() < 0.5 else "T")
            doc: dict[str, Any] = {
                # An ObjectId starts with the second it was made: the upload's.
                "_id": f"{uploaded:08x}{int(rng.integers(0, 2**63)):016x}",
                "created_at": created,
                "enteredBy": ENTERED_BY[int(rng.integers(0, len(ENTERED_BY)))],
                **fields,
            }
            if rng.random() < 0.5:
                doc["utcOffset"] = int(moment.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
            records.append((uploaded * 1000, doc))
            repeated = copies.random() < TREATMENT_COPY_RATE
            if repeated and not faulty and ("insulin" in fields or "carbs" in fields):
                again = seconds + int(copies.integers(1, 30))
                copy = {key: v for key, v in doc.items() if key != "utcOffset"}
                copy.update(
                    _id=f"{again:08x}{int(copies.integers(0, 2**63)):016x}",
                    created_at=iso_ms(again * 1000),
                    enteredBy=COPY_UPLOADER,
                )
                records.append((again * 1000, copy))

        def value(number: float) -> float | str:
            return str(number) if rng.random() < STRING_VALUE_RATE else number

        for onset, rise, over_bolus in plan.meals:
            carbs = round(rise * rng.uniform(0.35, 0.5))
            units = carbs / CARBS_PER_UNIT * (1.35 if over_bolus else 1.0) * rng.uniform(0.9, 1.1)
            kind = str(rng.choice(["Meal Bolus", "Meal Bolus", "Meal Bolus", "Bolus Wizard", "Snack Bolus"]))
            add(
                onset - rng.uniform(5, 20) * 60,
                {"eventType": kind, "insulin": value(pump_units(units)), "carbs": value(carbs)},
            )
            if rise > 110 and rng.random() < 0.6:
                fields: dict[str, Any] = {
                    "eventType": "Correction Bolus",
                    "insulin": value(pump_units(rng.uniform(0.5, 2.0))),
                }
                if rng.random() < 0.5:
                    fields["carbs"] = None
                add(onset + rng.uniform(100, 150) * 60, fields)
        for nadir in plan.lows:
            add(
                nadir - rng.uniform(0, 10) * 60,
                {
                    "eventType": "Carb Correction",
                    "carbs": value(int(rng.choice([15, 20]))),
                    "insulin": None,
                },
            )
        for _ in range(int(rng.integers(1, 3))):
            rate = round(float(rng.uniform(0.2, 1.5)), 2)
            hours = float(rng.uniform(0, 24))
            add(
                (midnight + timedelta(hours=hours)).timestamp(),
                {
                    "eventType": "Temp Basal",
                    "duration": int(rng.choice([30, 60, 120])),
                    "rate": rate,
                    "absolute": rate,
                },
            )
        if rng.random() < 0.2:
            add(
                (midnight + timedelta(hours=float(rng.uniform(8, 22)))).timestamp(),
                {"eventType": "Note", "notes": "exercise"},
            )
        if ordinal % 3 == 0:
            add(
                (midnight + timedelta(hours=20)).timestamp(),
                {"eventType": "Site Change", "notes": "new cannula"},
            )
        if ordinal % BAD_TREATMENT_EVERY_DAYS == 1:
            at_s = (midnight + timedelta(hours=float(rng.uniform(9, 21)))).timestamp()
            bad = ordinal // BAD_TREATMENT_EVERY_DAYS % 3
            if bad == 0:
                add(at_s, {"eventType": "Correction Bolus", "insulin": -1.5}, faulty=True)
            elif bad == 1:
                add(at_s, {"eventType": "Meal Bolus", "insulin": 2.0, "carbs": 2500}, faulty=True)
            else:
                # No zone: which instant it names is anyone's guess. (A record without created_at
                # at all a site never serves: every query filters on it.)
                add(at_s, {"eventType": "Note", "notes": "logged without a zone"}, faulty=True)
                stamp = records[-1][1]["created_at"]
                records[-1][1]["created_at"] = (
                    datetime.fromisoformat(stamp).astimezone(self.tz).strftime("%Y-%m-%dT%H:%M:%S")
                )
        return tuple(records)

    def _closed_loop_treatments(self, ordinal: int) -> tuple[tuple[int, dict[str, Any]], ...]:
        assert self.uploader is not None
        return closed_loop_treatments(self._plan(ordinal), ordinal, self._seed64, self.tz, self.uploader)
